# A stand-in for the few nixpkgs functions the flake calls, for `cargo xtask test`'s
# evaluation check (nixpkgs itself cannot be fetched on the project's CI machines). Each
# function returns what it was given, plus an `outPath` made from the name, so the check can
# read back what the flake's own logic decided: which derivations, with which attributes.
{ xenVersion }:

let
  drv = kind: attrs: attrs // {
    type = "derivation";
    standinKind = kind;
    outPath = "/nix/store/00000000000000000000000000000000-${attrs.name or "${attrs.pname}-${attrs.version}"}";
  };
  tool = name: drv "tool" { inherit name; };
  pkgs = {
    stdenvNoCC.mkDerivation = drv "mkDerivation";
    mkShell = attrs: drv "mkShell" (attrs // { name = "shell"; });
    rustPlatform = {
      buildRustPackage = drv "buildRustPackage";
      importCargoLock = { lockFile }: drv "importCargoLock" {
        name = "cargo-vendor-dir";
        lockFile = toString lockFile;
      };
    };
    cargo = tool "cargo";
    rustc = tool "rustc";
    clippy = tool "clippy";
    rustfmt = tool "rustfmt";
    curl = tool "curl";
    cacert = tool "cacert";
    xen = tool "xen" // { version = xenVersion; };
    path = ./.;
  };
in
{
  legacyPackages.x86_64-linux = pkgs;
}
