{
  description = "stubdoms: reproducible, boot-tested Xen stub-domain images";

  # A supported NixOS release; flake.lock pins the revision. Nixpkgs gives only the driver's
  # Rust toolchain, the crates of Cargo.lock and curl: the images build in the project's own
  # pinned environments (nix/README.md).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      stubdoms = import ./nix/stubdoms.nix {
        inherit (pkgs) stdenvNoCC mkShell rustPlatform cargo rustc clippy rustfmt curl cacert
          xen path;
        src = ./.;
      };
    in
    {
      # One package per recipe (per Xen release for ioemu: `ioemu-xen4_20`), `ioemu-stubdom`
      # for nixpkgs' Xen release, and `default` with every image NixOS's Xen can use.
      packages.${system} = stubdoms.packages;
      checks.${system} = stubdoms.checks;
      devShells.${system}.default = stubdoms.shell;
    };
}
