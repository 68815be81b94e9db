/* C API of the stubrt runtime for Xen stub domains.
 *
 * A C stub domain defines `int main(void)`; returning 0 powers the domain off, anything
 * else reports a crash. Functions returning int give 0 (or a length/count) on success and a
 * negative STUBRT_E* code on failure. Compile with a freestanding compiler
 * (-ffreestanding -fno-pic -mno-red-zone -nostdlib) and link against libstubrt_c.a with the
 * runtime's linker script. */
#ifndef STUBRT_H
#define STUBRT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define STUBRT_ENOENT 2    /* no such xenstore node */
#define STUBRT_EIO 5       /* I/O or protocol error */
#define STUBRT_ENOMEM 12   /* out of memory */
#define STUBRT_EINVAL 22   /* bad argument */
#define STUBRT_ENOSPC 28   /* buffer too small */
#define STUBRT_ENODEV 19   /* no xenstore (e.g. booted as dom0) */
#define STUBRT_ETIMEDOUT 110

/* Console. printf understands %s %d %i %u %x %X %c %p %% with the l and ll modifiers
 * (%ld %lu %lx %lld %llu %llx), a field width and the 0 and - flags. */
int stubrt_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int stubrt_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int stubrt_snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void stubrt_console_write(const char *buf, size_t len);

/* How the domain was booted: "pv", "pvh" or "aarch64" ("unknown" before boot finished). */
const char *stubrt_boot_kind(void);

/* Time: nanoseconds since the hypervisor booted; seconds since the Unix epoch. */
uint64_t stubrt_time_ns(void);
uint64_t stubrt_wallclock_s(void);

/* Ends the domain: 0 powers off, anything else reports a crash. */
void stubrt_exit(int code) __attribute__((noreturn));

/* Xenstore. Relative paths are below /local/domain/<domid>. */
int stubrt_xs_available(void);
int stubrt_domid(void);                                   /* >= 0, or a negative code */
int stubrt_xs_read(const char *path, char *buf, size_t size);  /* length, NUL-terminated */
int stubrt_xs_write(const char *path, const char *value);
/* Child names as consecutive NUL-terminated strings; returns their count. */
int stubrt_xs_directory(const char *path, char *buf, size_t size);
int stubrt_xs_watch(const char *path, const char *token);
int stubrt_xs_unwatch(const char *path, const char *token);
/* Waits for the next watch event (up to 10 s) and copies its path and token. */
int stubrt_xs_read_watch(char *path, size_t path_size, char *token, size_t token_size);

/* Block devices, by front-end directory (e.g. "device/vbd/51712"). */
struct stubrt_blk;
struct stubrt_blk *stubrt_blk_open(const char *dir);   /* NULL on failure */
int stubrt_blk_info(const struct stubrt_blk *blk, uint64_t *sectors, uint32_t *sector_size,
                    int *read_only);
/* `len` must be a whole number of sectors. */
int stubrt_blk_read(struct stubrt_blk *blk, uint64_t sector, void *buf, size_t len);
int stubrt_blk_write(struct stubrt_blk *blk, uint64_t sector, const void *buf, size_t len);
int stubrt_blk_flush(struct stubrt_blk *blk);
void stubrt_blk_close(struct stubrt_blk *blk);

#endif
