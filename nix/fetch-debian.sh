# A fixed-output fetch of one pinned Debian file (nix/fetch-debian.nix). The repository names
# no mirror host: the URLs come from the variables of whatever runs the build (the
# nix-daemon on a multi-user install), the same ones the driver reads, and for the main
# archive also from nixpkgs' own `mirror://debian` list. Nix checks the sha256 afterwards.
# In: $archive (debian | debian-security), $path (in the archive), $snapshot (when it was
# pinned, or empty), $debianMirrors; out: $out.
set -u
urls=()
case "$archive" in
debian)
    [ -n "${STUBDOMS_DEBIAN_MIRROR:-}" ] && urls+=("${STUBDOMS_DEBIAN_MIRROR%/}/$path")
    for m in $debianMirrors; do urls+=("${m%/}/$path"); done
    ;;
debian-security)
    [ -n "${STUBDOMS_DEBIAN_SECURITY_MIRROR:-}" ] && urls+=("${STUBDOMS_DEBIAN_SECURITY_MIRROR%/}/$path")
    ;;
*)
    echo "error: $path: unknown archive \`$archive\` (inputs.lock knows debian and debian-security)" >&2
    exit 1
    ;;
esac
# Debian drops superseded versions at each point release; a snapshot archive keeps them.
if [ -n "${STUBDOMS_DEBIAN_SNAPSHOT:-}" ] && [ -n "$snapshot" ]; then
    urls+=("${STUBDOMS_DEBIAN_SNAPSHOT%/}/archive/$archive/$snapshot/$path")
fi
for url in ${urls[@]+"${urls[@]}"}; do
    echo "fetching $url"
    if curl --fail --location --silent --show-error --retry 2 --connect-timeout 30 \
        --output "$out" "$url"; then
        exit 0
    fi
    rm -f "$out"
done
echo "error: $path ($archive) could not be fetched from ${#urls[@]} URL(s)." >&2
echo "Set STUBDOMS_DEBIAN_MIRROR, STUBDOMS_DEBIAN_SECURITY_MIRROR and STUBDOMS_DEBIAN_SNAPSHOT (a snapshot archive's URL before /archive/, for files the mirrors dropped) in the environment of the Nix builds: the nix-daemon's on a multi-user install (NixOS: systemd.services.nix-daemon.environment)." >&2
exit 1
