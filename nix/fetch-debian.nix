# One pinned Debian file as a fixed-output derivation (by the sha256 of inputs.lock), fetched
# by fetch-debian.sh. The mirror variables are `impureEnvVars`: a fixed-output derivation may
# read them without `--impure`, and they do not change its output path.
{ stdenvNoCC, curl, cacert, debianMirrors }:

{ name, archive, path, sha256, snapshot }:

stdenvNoCC.mkDerivation {
  inherit name archive path debianMirrors;
  snapshot = if snapshot == null then "" else snapshot;
  outputHashMode = "flat";
  outputHashAlgo = "sha256";
  outputHash = sha256;
  nativeBuildInputs = [ curl ];
  SSL_CERT_FILE = "${cacert}/etc/ssl/certs/ca-bundle.crt";
  impureEnvVars = [
    "STUBDOMS_DEBIAN_MIRROR" "STUBDOMS_DEBIAN_SECURITY_MIRROR" "STUBDOMS_DEBIAN_SNAPSHOT"
    "http_proxy" "https_proxy" "ftp_proxy" "all_proxy" "no_proxy"
    "HTTP_PROXY" "HTTPS_PROXY" "FTP_PROXY" "ALL_PROXY" "NO_PROXY"
  ];
  preferLocalBuild = true;
  buildCommand = "source ${./fetch-debian.sh}";
}
