/* Example stub domain in C on the stubrt runtime: greets, reports who it is, reads sector 0
 * of each of its disks and leaves a result in xenstore. Booted as dom0 (no xenstore) it runs
 * a smoke test instead. */
#include <stubrt.h>

static char names[1024];
static unsigned char sector[4096];

/* Prints "<sectors> sectors of <size> bytes, sector 0: <first 16 bytes> ... <last 2>" for
 * the disk at `dir`; returns 0 if sector 0 was read. */
static int show_disk(const char *id, const char *dir)
{
    struct stubrt_blk *blk = stubrt_blk_open(dir);
    uint64_t sectors;
    uint32_t size;
    int ro, j, rc = -1;

    if (!blk) {
        stubrt_printf("vbd %s: open failed\n", id);
        return -1;
    }
    if (stubrt_blk_info(blk, &sectors, &size, &ro) != 0 || size < 16 || size > sizeof(sector)) {
        stubrt_printf("vbd %s: unusable sector size\n", id);
    } else if (stubrt_blk_read(blk, 0, sector, size) != 0) {
        stubrt_printf("vbd %s: read failed\n", id);
    } else {
        stubrt_printf("vbd %s: %llu sectors of %u bytes, sector 0:", id,
                      (unsigned long long)sectors, size);
        for (j = 0; j < 16; j++)
            stubrt_printf(" %02x", sector[j]);
        stubrt_printf(" ... %02x %02x\n", sector[size - 2], sector[size - 1]);
        rc = 0;
    }
    stubrt_blk_close(blk);
    return rc;
}

int main(void)
{
    char path[128], name[128], list[512], result[64];
    const char *id;
    int domid, n, i, ok = 0;
    size_t used = 0;
    uint64_t started = stubrt_time_ns();

    stubrt_printf("Hello from c-stubdom (%s)\n", stubrt_boot_kind());
    stubrt_printf("xen uptime %llu ms, wallclock %llu s\n",
                  (unsigned long long)(stubrt_time_ns() / 1000000),
                  (unsigned long long)stubrt_wallclock_s());
    if (!stubrt_xs_available()) {
        stubrt_printf("xenstore unavailable (dom0?): smoke test done\n");
        return 0;
    }
    domid = stubrt_domid();
    if (domid < 0) {
        stubrt_printf("c-stubdom: error: read domid: %d\n", domid);
        return 1;
    }
    stubrt_snprintf(path, sizeof(path), "/local/domain/%d/name", domid);
    if (stubrt_xs_read(path, name, sizeof(name)) < 0) {
        stubrt_printf("c-stubdom: error: read name\n");
        return 1;
    }
    stubrt_printf("domid %d, name %s\n", domid, name);

    n = stubrt_xs_directory("device/vbd", names, sizeof(names));
    if (n == -STUBRT_ENOENT)
        n = 0;
    if (n < 0) {
        stubrt_printf("c-stubdom: error: list vbds: %d\n", n);
        return 1;
    }
    list[0] = '\0';
    for (i = 0, id = names; i < n; i++) {
        int w = stubrt_snprintf(list + used, sizeof(list) - used, "%s%s", i ? " " : "", id);
        if (w > 0 && (size_t)w < sizeof(list) - used)
            used += (size_t)w;
        while (*id)
            id++;
        id++;
    }
    stubrt_printf("vbds: %s\n", list);
    for (i = 0, id = names; i < n; i++) {
        stubrt_snprintf(path, sizeof(path), "device/vbd/%s", id);
        if (show_disk(id, path) == 0)
            ok++;
        while (*id)
            id++;
        id++;
    }
    stubrt_snprintf(result, sizeof(result), "ok %d disk%s", ok, ok == 1 ? "" : "s");
    if (stubrt_xs_write("data/result", result) < 0) {
        stubrt_printf("c-stubdom: error: write result\n");
        return 1;
    }
    stubrt_printf("result written: data/result = %s\n", result);
    stubrt_printf("c-stubdom: done in %llu ms\n",
                  (unsigned long long)((stubrt_time_ns() - started) / 1000000));
    return 0;
}
