# The images, built by the project's own driver inside a Nix build: `cargo xtask build
# --offline` in the same pinned build environments as outside Nix, assembled by the driver
# from the same Debian packages, here fixed-output fetches (nix/fetch-debian.nix). Nixpkgs
# gives only the driver's Rust toolchain, the crates of Cargo.lock and curl for the fetches;
# no compiler, library or tool of nixpkgs reaches an image. See nix/README.md.
{ stdenvNoCC, mkShell, rustPlatform, cargo, rustc, clippy, rustfmt, curl, cacert, xen, path
, src }:

let
  inputs = import ./inputs.nix { inherit src; };

  fetchDebian = import ./fetch-debian.nix {
    inherit stdenvNoCC curl cacert;
    debianMirrors = (import (path + "/pkgs/build-support/fetchurl/mirrors.nix")).debian;
  };

  version = (builtins.fromTOML (builtins.readFile (src + "/xtask/Cargo.toml"))).package.version;

  cargoLock.lockFile = src + "/Cargo.lock";

  # Where NixOS's libxl looks for stub-domain images: `${xen}/libexec/xen/boot`.
  installDir = "libexec/xen/boot";

  # The driver, with the files it reads in a cache laid out as its own (`sha256/<hex>`), the
  # crates of Cargo.lock from nixpkgs' vendoring (checked by the driver against the lock) and
  # `command` run in a copy of the checkout.
  driver = { pname, files, command, install, tools ? [ ], meta ? { } }:
    let fetches = map fetchDebian files;
    in rustPlatform.buildRustPackage {
      inherit pname version src cargoLock meta;
      nativeBuildInputs = tools;
      # `name=store path` pairs; the cache file is named by the sha256.
      stubdomsInputs = map (f: "${f.outputHash}=${f}") fetches;
      STUBDOMS_VENDORED_CRATES = rustPlatform.importCargoLock cargoLock;
      # Not the folder Nix builds in (/build), which the build steps' own folders start with
      # and the driver's host-path check would then find in every image.
      buildPhase = ''
        runHook preBuild
        top=$NIX_BUILD_TOP/stubdoms
        mkdir -p $top/home $top/cache/sha256
        cp -r . $top/checkout
        for i in $stubdomsInputs; do cp ''${i#*=} $top/cache/sha256/''${i%%=*}; done
        cd $top/checkout
        # The driver's own default epoch (`cargo xtask build` outside Nix), not stdenv's.
        unset SOURCE_DATE_EPOCH
        export HOME=$top/home STUBDOMS_CACHE=$top/cache
        ${command}
        runHook postBuild
      '';
      installPhase = ''
        runHook preInstall
        ${install}
        runHook postInstall
      '';
      doCheck = false;
      # Nothing rewrites the images after the driver: they stay the bytes manifest.json lists.
      dontFixup = true;
      passthru = { inherit fetches installDir; };
    };

  # `cargo xtask build` of some recipes (and of one Xen release, for the recipes built per
  # release), installed where NixOS's libxl looks, with the build's manifest beside them.
  images = { pname, recipes, release ? null, description }: driver {
    inherit pname;
    files = inputs.unique (builtins.concatMap (r: inputs.forRecipe r release) recipes);
    command = "cargo xtask build --offline ${builtins.concatStringsSep " " recipes}"
      + (if release == null then "" else " --xen-release ${release}");
    install = ''
      mkdir -p $out/${installDir} $out/share/stubdoms
      find target/images -type f ! -name manifest.json | sort | while read -r f; do
        to=$out/${installDir}/$(basename $f)
        if [ -e $to ]; then echo "error: two images are called $(basename $f)" >&2; exit 1; fi
        cp $f $to
      done
      cp target/images/manifest.json $out/share/stubdoms/${pname}.manifest.json
    '';
    meta = { inherit description; platforms = [ "x86_64-linux" ]; };
  };

  # `ioemu-xen4_20` and so on: one attribute per Xen release (attribute names cannot hold a
  # dot), since an ioemu image starts only on the release it was built for.
  releaseAttr = name: release: "${name}-xen${builtins.replaceStrings [ "." ] [ "_" ] release}";

  perRecipe = builtins.concatMap (name:
    let r = inputs.recipes.${name};
        releases = builtins.attrNames r.xenReleases;
    in if releases == [ ] then [{
      inherit name;
      value = images { pname = name; recipes = [ name ]; description = "${name} stub-domain images"; };
    }] else map (release: {
      name = releaseAttr name release;
      value = images {
        pname = releaseAttr name release;
        recipes = [ name ];
        inherit release;
        description = "${name} stub-domain images for Xen ${release}";
      };
    }) releases) (builtins.attrNames inputs.recipes);

  packages = builtins.listToAttrs perRecipe;

  # The Xen release of nixpkgs' `xen`, for the images that must match it.
  xenRelease = builtins.concatStringsSep "." (builtins.genList
    (i: builtins.elemAt (builtins.splitVersion xen.version) i) 2);

  ioemuForXen = packages.${releaseAttr "ioemu" xenRelease} or (throw
    "nixpkgs' xen is ${xen.version}, and the ioemu recipe is built for Xen ${
      builtins.concatStringsSep ", " (builtins.attrNames inputs.recipes.ioemu.xenReleases)}: use one of the ioemu-xen* packages with a matching Xen");

  # The checks run the driver's own: `lint` (formatting, clippy of the host code and of the
  # image configuration), and `test` (everything CI runs: workspace tests, every boot test
  # under QEMU's software emulation, the template check and the reproducibility check).
  check = name: files: command: driver {
    pname = "stubdoms-${name}";
    inherit files command;
    # The lints and the workspace tests use the host toolchain's rustfmt and clippy.
    tools = [ clippy rustfmt ];
    install = "touch $out";
  };
in
{
  inherit inputs;

  packages = packages // {
    # The ioemu stub domain for nixpkgs' Xen release.
    ioemu-stubdom = ioemuForXen;
    # Every image that NixOS's Xen can use, in one folder.
    default = images {
      pname = "stubdoms";
      recipes = builtins.attrNames inputs.recipes;
      release = xenRelease;
      description = "Xen stub-domain images (ioemu for Xen ${xenRelease}, PV-GRUB, the examples)";
    };
  };

  checks = packages // {
    lint = check "lint" inputs.forLint "cargo xtask lint";
    test = check "test" inputs.all "cargo xtask test";
  };

  # The host needs only the driver's toolchain: everything else comes from inputs.lock.
  shell = mkShell { packages = [ cargo rustc clippy rustfmt ]; };
}
