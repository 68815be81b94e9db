# Builds the images with the project's own driver (`cargo xtask build --offline`), from the
# same pins: every file of inputs.lock becomes a fixed-output fetch (by sha256), placed in a
# cache folder laid out like the driver's, and the Rust crates come from Cargo.lock.
#
# Mirrors: files of the `debian` archive come from nixpkgs' `mirror://debian/`; files of
# `debian-security` need STUBDOMS_DEBIAN_SECURITY_MIRROR (with --impure), or can be added to
# the store from a filled cache: `cargo xtask fetch` then
# `nix-store --add-fixed sha256 ~/.cache/stubdoms/sha256/<hash>` (the error says which).
{ lib, stdenv, rustPlatform, fetchurl, requireFile, runCommand, mkShell
, cargo, rustc, clippy, rustfmt, gcc, binutils, gnumake, autoconf, automake, gettext
, bison, flex, python3, patch, pkg-config, ninja, meson, glib, pixman, dtc, elfutils, bc
, e2fsprogs, util-linux, cpio, gzip, xz, zstd, bzip2, dpkg, qemu, src }:

let
  lock = builtins.fromTOML (builtins.readFile (src + "/inputs.lock"));
  securityMirror = builtins.getEnv "STUBDOMS_DEBIAN_SECURITY_MIRROR";

  fetch = { archive, path, sha256, name }:
    if archive == "debian" then
      fetchurl { url = "mirror://debian/${path}"; inherit sha256 name; }
    else if securityMirror != "" then
      fetchurl { url = "${securityMirror}/${path}"; inherit sha256 name; }
    else
      requireFile {
        inherit name sha256;
        message = ''
          ${path} (debian-security, sha256 ${sha256}) is not in the store. Either build with
          STUBDOMS_DEBIAN_SECURITY_MIRROR=<mirror URI> and --impure, or run
          `cargo xtask fetch` and `nix-store --add-fixed sha256 ~/.cache/stubdoms/sha256/${sha256}`.
        '';
      };

  safeName = s: builtins.replaceStrings [ "~" ":" "+" ] [ "_" "_" "_" ] s;

  debFiles = map (d: fetch {
    inherit (d) archive path sha256;
    name = safeName "${d.name}_${d.arch}.deb";
  }) (builtins.filter (d: d ? sha256) (lock.deb or [ ]));

  sourceFiles = lib.concatMap (s: map (f: fetch {
    inherit (s) archive;
    path = "${s.dir}/${f.name}";
    inherit (f) sha256;
    name = safeName f.name;
  }) s.files) (builtins.filter (s: s ? files) (lock.source or [ ]));

  # The driver's cache layout: sha256/<hex>, one file per pinned input.
  inputCache = runCommand "stubdoms-inputs" { } ''
    mkdir -p $out/sha256
    ${lib.concatMapStrings (f: ''
      ln -s ${f} $out/sha256/${f.outputHash}
    '') (debFiles ++ sourceFiles)}
  '';

  recipeNames = builtins.attrNames (lib.filterAttrs (n: t: t == "directory"
    && builtins.pathExists (src + "/stubdoms/${n}/stubdom.toml"))
    (builtins.readDir (src + "/stubdoms")));

  buildTools = [ gcc binutils gnumake autoconf automake gettext bison flex python3 patch
    pkg-config ninja meson glib pixman dtc elfutils bc ];

  build = names: rustPlatform.buildRustPackage {
    pname = "stubdoms-${lib.concatStringsSep "-" names}";
    version = "0.1.0";
    inherit src;
    cargoLock.lockFile = src + "/Cargo.lock";
    nativeBuildInputs = buildTools;
    dontCargoBuild = true;
    dontCargoInstall = true;
    doCheck = false;
    buildPhase = ''
      export HOME=$TMPDIR STUBDOMS_CACHE=$TMPDIR/cache SOURCE_DATE_EPOCH=1735689600
      mkdir -p $STUBDOMS_CACHE/sha256
      cp -L ${inputCache}/sha256/* $STUBDOMS_CACHE/sha256/
      cargo xtask build --offline ${lib.escapeShellArgs names}
    '';
    installPhase = ''
      mkdir -p $out/lib/xen/boot $out/share/stubdoms
      for f in target/images/*/*; do
        [ -f "$f" ] && cp "$f" $out/lib/xen/boot/
      done
      cp target/images/manifest.json $out/share/stubdoms/
    '';
  };
in
{
  recipes = lib.genAttrs recipeNames (n: build [ n ]);
  all = build [ ];
  shell = mkShell {
    packages = buildTools ++ [ cargo rustc clippy rustfmt e2fsprogs util-linux cpio gzip xz
      zstd bzip2 dpkg qemu ];
  };
  checks = {
    fmt = runCommand "stubdoms-fmt" { nativeBuildInputs = [ cargo rustfmt ]; } ''
      cd ${src} && cargo fmt --all --check && touch $out
    '';
  };
}
