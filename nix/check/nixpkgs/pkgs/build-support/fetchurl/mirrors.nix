# The stand-in's `mirror://debian` list (nixpkgs has the real one at this path). `.invalid`
# names no host.
{ debian = [ "https://debian-mirror-one.invalid/debian/" "ftp://debian-mirror-two.invalid/debian/" ]; }
