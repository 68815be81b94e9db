# Which pinned files each package needs, read from the same files the driver reads:
# `inputs.lock` and the recipes' `stubdom.toml`. A recipe builds in the `bookworm-build`
# environment (every recipe kind does), with its own `inputs`, and, for a recipe with
# `xen-releases`, in the environment of each release it is built for. These rules are the
# driver's (`Workspace::build_blobs` in xtask/src/workspace.rs); `cargo xtask test`
# evaluates this file and fails if the two ever disagree.
{ src }:

let
  lock = builtins.fromTOML (builtins.readFile (src + "/inputs.lock"));
  debs = lock.deb or [ ];
  sources = lock.source or [ ];
  envs = lock.env or [ ];

  # The environment every recipe builds in (`buildenv::BUILD`).
  buildEnv = "bookworm-build";

  # A store name from a file name: the store allows letters, digits and `+-._?=`.
  storeName = name:
    let
      ok = c: builtins.match "[A-Za-z0-9+._?=-]" c != null;
      chars = builtins.filter (c: builtins.isString c && c != "") (builtins.split "" name);
    in
    builtins.concatStringsSep "" (map (c: if ok c then c else "_") chars);

  # One file to fetch: where it is in a Debian archive and what it hashes to.
  file = { archive, path, sha256, snapshot ? null }: {
    inherit archive path sha256 snapshot;
    name = storeName (baseNameOf path);
  };

  debFile = d: file { inherit (d) archive path sha256; snapshot = d.snapshot or null; };

  find = what: pred: list:
    let found = builtins.filter pred list;
    in if found == [ ] then throw "inputs.lock has no ${what}: run `cargo xtask pin`"
    else builtins.head found;

  # `src:NAME`, `NAME` (amd64) or `NAME:ARCH`, as `Lock::resolve` reads them.
  resolve = reference:
    let
      source = builtins.match "src:(.*)" reference;
      parts = builtins.match "([^:]*):(.*)" reference;
      name = if parts == null then reference else builtins.elemAt parts 0;
      arch = if parts == null then "amd64" else builtins.elemAt parts 1;
      root = find "deb `${name}:${arch}`"
        (d: d.name == name && d.arch == arch && (d.required-by or [ ]) == [ ]) debs;
      need = n: find "deb `${n}:${arch}` (needed by ${name})"
        (d: d.name == n && d.arch == arch) debs;
    in
    if source != null then
      # A recipe's source: not a binary package's corresponding source (`of`).
      sourceFiles (find "source `${builtins.head source}`"
        (s: s.name == builtins.head source && !(s ? of)) sources)
    else map debFile ([ root ] ++ map need (root.needs or [ ]));

  sourceFiles = s: map (f: file {
    inherit (s) archive;
    path = "${s.dir}/${f.name}";
    inherit (f) sha256;
    snapshot = s.snapshot or null;
  }) s.files;

  envFiles = name: map debFile (find "env `${name}`" (e: e.name == name) envs).debs;

  # Each file once (by sha256), in a fixed order.
  unique = files: builtins.attrValues (builtins.listToAttrs
    (map (f: { name = f.sha256; value = f; }) files));

  recipeNames = builtins.filter
    (n: builtins.pathExists (src + "/stubdoms/${n}/stubdom.toml"))
    (builtins.attrNames (builtins.readDir (src + "/stubdoms")));

  recipe = name:
    let toml = builtins.fromTOML (builtins.readFile (src + "/stubdoms/${name}/stubdom.toml"));
    in {
      inherit name;
      inputs = toml.inputs or [ ];
      xenReleases = toml.xen-releases or { };
    };
in
rec {
  inherit storeName unique;

  recipes = builtins.listToAttrs (map (n: { name = n; value = recipe n; }) recipeNames);

  # The files `cargo xtask build NAME [--xen-release R]` reads: the build environment, the
  # recipe's inputs and the environments of the Xen releases built (all when `release` is
  # null).
  forRecipe = name: release:
    let
      r = recipes.${name};
      releases = if r.xenReleases == { } then [ ]
        else if release == null then builtins.attrNames r.xenReleases
        else [ release ];
    in
    unique (envFiles buildEnv
      ++ builtins.concatMap resolve r.inputs
      ++ builtins.concatMap (rel: envFiles r.xenReleases.${rel}) releases);

  # What `cargo xtask lint` reads: the build environment.
  forLint = unique (envFiles buildEnv);

  # Every pinned file (what `cargo xtask test` reads: all machines, all images).
  all = unique (map debFile (builtins.filter (d: d ? sha256) debs)
    ++ builtins.concatMap sourceFiles (builtins.filter (s: s ? files) sources)
    ++ builtins.concatMap (e: envFiles e.name) envs);
}
