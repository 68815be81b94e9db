# What the flake decides, as JSON, for `cargo xtask test` (xtask/src/nixeval.rs): the flake's
# outputs evaluated against the nixpkgs stand-in, each package and check reduced to what the
# check compares with the driver: its fetches, the inputs its build copies, its command, where
# it installs.
{ xenVersion ? "4.20.1" }:

let
  flake = import ../../flake.nix;
  nixpkgs = import ./nixpkgs { inherit xenVersion; };
  outputs = flake.outputs { self = { outPath = toString ../..; }; inherit nixpkgs; };
  system = "x86_64-linux";

  fetch = f: {
    inherit (f) name archive path snapshot outputHash outputHashMode outputHashAlgo
      impureEnvVars debianMirrors standinKind;
    # Not `outPath`: JSON output prints a set with one as that string.
    storePath = f.outPath;
  };

  package = p: {
    inherit (p) pname standinKind buildPhase installPhase dontFixup doCheck stubdomsInputs;
    tools = map (t: t.name) (p.nativeBuildInputs or [ ]);
    vendored = p.STUBDOMS_VENDORED_CRATES.lockFile;
    installDir = p.passthru.installDir;
    fetches = map fetch p.passthru.fetches;
  };
in
{
  nixpkgsUrl = flake.inputs.nixpkgs.url;
  packages = builtins.mapAttrs (_: package) outputs.packages.${system};
  checks = builtins.mapAttrs (_: package) outputs.checks.${system};
  shell = map (t: t.name) outputs.devShells.${system}.default.packages;
}
