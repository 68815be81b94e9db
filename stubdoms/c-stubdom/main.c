/* Example stub domain in C on the stubrt runtime: greets, reports who it is, reads sector 0
 * of each of its disks and leaves a result in xenstore. Booted as dom0 (no xenstore) it runs
 * a smoke test instead. */
#include <stubrt.h>

static char names[1024];
static unsigned char sector[4096];

int main(void)
{
    char path[128], name[128], result[64];
    const char *id;
    int domid, n, i, ok = 0;

    stubrt_printf("Hello from c-stubdom\n");
    stubrt_printf("uptime %llu ms, wallclock %llu s\n",
                  (unsigned long long)(stubrt_time_ns() / 1000000),
                  (unsigned long long)stubrt_wallclock_s());
    if (!stubrt_xs_available()) {
        stubrt_printf("xenstore unavailable (dom0?): smoke test done\n");
        return 0;
    }
    domid = stubrt_domid();
    if (domid < 0) {
        stubrt_printf("c-stubdom: cannot read domid: %d\n", domid);
        return 1;
    }
    stubrt_snprintf(path, sizeof(path), "/local/domain/%d/name", domid);
    if (stubrt_xs_read(path, name, sizeof(name)) < 0)
        name[0] = '\0';
    stubrt_printf("domid %d, name %s\n", domid, name);

    n = stubrt_xs_directory("device/vbd", names, sizeof(names));
    if (n < 0)
        n = 0;
    stubrt_printf("%d vbd(s)\n", n);
    for (i = 0, id = names; i < n; i++) {
        struct stubrt_blk *blk;
        uint64_t sectors;
        uint32_t size;
        int ro, j;

        stubrt_snprintf(path, sizeof(path), "device/vbd/%s", id);
        blk = stubrt_blk_open(path);
        if (blk && stubrt_blk_info(blk, &sectors, &size, &ro) == 0 && size <= sizeof(sector)
            && stubrt_blk_read(blk, 0, sector, size) == 0) {
            stubrt_printf("vbd %s: %llu sectors of %u bytes, sector 0:", id,
                          (unsigned long long)sectors, size);
            for (j = 0; j < 16; j++)
                stubrt_printf(" %02x", sector[j]);
            stubrt_printf("\n");
            ok++;
        } else {
            stubrt_printf("vbd %s: cannot read\n", id);
        }
        stubrt_blk_close(blk);
        while (*id)
            id++;
        id++;
    }
    stubrt_snprintf(result, sizeof(result), "ok %d disks", ok);
    if (stubrt_xs_write("data/result", result) < 0) {
        stubrt_printf("c-stubdom: cannot write data/result\n");
        return 1;
    }
    stubrt_printf("c-stubdom: done, %d disks\n", ok);
    return 0;
}
