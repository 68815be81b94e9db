{
  description = "stubdoms: reproducible, boot-tested Xen stub-domain images";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      stubdoms = pkgs.callPackage ./nix/stubdoms.nix { src = self; };
    in
    {
      # One package per recipe (the Nix attribute is the recipe name), plus everything.
      packages.${system} = stubdoms.recipes // {
        ioemu-stubdom = stubdoms.recipes.ioemu or (throw "the ioemu recipe is not in this revision");
        default = stubdoms.all;
      };
      devShells.${system}.default = stubdoms.shell;
      checks.${system} = stubdoms.checks;
    };
}
