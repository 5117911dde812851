/* powercut_shim: an LD_PRELOAD library that makes a later "power cut" of the process possible.
 *
 * For every file and directory under $POWERCUT_ROOT it appends to $POWERCUT_LOG, BEFORE each
 * change reaches the file system, what is needed to undo it; after each successful fsync or
 * fdatasync it records what became durable. After the process is SIGKILLed (the page cache
 * keeps everything), tests/powercut/powercut.py rolls every file and directory back to its
 * last synced state: the disk as a power cut would leave it. The model and its limits are in
 * tests/powercut/README.md.
 *
 * Log records, one text line each (paths hex-encoded, absolute):
 *   F <dev> <ino> <size> <path>     a regular file seen (opened); <size> before any O_TRUNC
 *   W <dev> <ino> <off> <n>\n<n bytes>  old contents of [off, off+n) about to be overwritten
 *                                   (write, pwrite, writev, ftruncate, O_TRUNC, fallocate)
 *   S <dev> <ino> <size>            fsync/fdatasync of the file returned 0 at this size
 *   Y <path>                        fsync of the directory returned 0
 *   C <path>   M <path>             a file (or hard link) / a directory is about to be created
 *   R <from> <to> <shadow|->        a rename; <shadow> keeps the replaced target (hard link)
 *   U <path> <shadow>               an unlink; <shadow> keeps the file (hard link)
 *   D <path>                        an rmdir
 *   K                               the namespace operation just logged failed: ignore it
 * Every tracked call holds one process-wide lock from its log record to its completion, so
 * the log order is the order of the changes. Calls on other paths and fds pass straight
 * through.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 65536

enum kind { UNTRACKED = 0, TRACKED_FILE = 1, TRACKED_DIR = 2 };

struct fd_info {
  unsigned char kind;
  unsigned char append;
  dev_t dev;
  ino_t ino;
  char* path; /* directories only: for Y records */
};

static struct fd_info g_fds[MAX_FDS];
static pthread_mutex_t g_mu = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static char g_root[PATH_MAX];
static size_t g_root_len;
static char g_shadow[PATH_MAX];
static int g_log_fd = -1;
static unsigned long g_shadow_seq;

/* ---- the real functions ---- */
static int (*real_open)(const char*, int, ...);
static int (*real_openat)(int, const char*, int, ...);
static ssize_t (*real_write)(int, const void*, size_t);
static ssize_t (*real_pwrite)(int, const void*, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec*, int);
static ssize_t (*real_pwritev)(int, const struct iovec*, int, off_t);
static ssize_t (*real_pwritev2)(int, const struct iovec*, int, off_t, int);
static int (*real_ftruncate)(int, off_t);
static int (*real_fallocate)(int, int, off_t, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_close)(int);
static int (*real_rename)(const char*, const char*);
static int (*real_renameat)(int, const char*, int, const char*);
static int (*real_renameat2)(int, const char*, int, const char*, unsigned);
static int (*real_unlinkat)(int, const char*, int);
static int (*real_mkdirat)(int, const char*, mode_t);
static int (*real_linkat)(int, const char*, int, const char*, int);

#define RESOLVE(name) real_##name = dlsym(RTLD_NEXT, #name)

static void powercut_init(void) {
  RESOLVE(open);
  RESOLVE(openat);
  RESOLVE(write);
  RESOLVE(pwrite);
  RESOLVE(writev);
  RESOLVE(pwritev);
  RESOLVE(pwritev2);
  RESOLVE(ftruncate);
  RESOLVE(fallocate);
  RESOLVE(fsync);
  RESOLVE(fdatasync);
  RESOLVE(close);
  RESOLVE(rename);
  RESOLVE(renameat);
  RESOLVE(renameat2);
  RESOLVE(unlinkat);
  RESOLVE(mkdirat);
  RESOLVE(linkat);
  const char* root = getenv("POWERCUT_ROOT");
  const char* log = getenv("POWERCUT_LOG");
  const char* shadow = getenv("POWERCUT_SHADOW");
  if (!root || !log || !shadow || root[0] != '/') return; /* tracking off */
  snprintf(g_root, sizeof g_root, "%s", root);
  g_root_len = strlen(g_root);
  while (g_root_len > 1 && g_root[g_root_len - 1] == '/') g_root[--g_root_len] = '\0';
  snprintf(g_shadow, sizeof g_shadow, "%s", shadow);
  g_log_fd = real_open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (g_log_fd < 0) {
    fprintf(stderr, "powercut_shim: cannot open %s: %s\n", log, strerror(errno));
    abort();
  }
  /* Keep the log fd out of the range the process is likely to dup2 onto. */
  int high = fcntl(g_log_fd, F_DUPFD_CLOEXEC, 1000);
  if (high >= 0) {
    real_close(g_log_fd);
    g_log_fd = high;
  }
}

/* Resolves on first use (another library's constructor may call open before ours runs). */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
__attribute__((constructor)) static void powercut_ctor(void) {
  pthread_once(&g_once, powercut_init);
}
#define INIT() pthread_once(&g_once, powercut_init)

static int tracking(void) { return g_log_fd >= 0; }

/* ---- the log ---- */

static void log_bytes(const void* data, size_t n) {
  const char* p = data;
  while (n > 0) {
    ssize_t w = real_write(g_log_fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "powercut_shim: writing the log failed: %s\n", strerror(errno));
      abort(); /* a log with a gap would make the rollback lie */
    }
    p += w;
    n -= (size_t)w;
  }
}

static void log_line(const char* fmt, ...) {
  char buf[3 * PATH_MAX + 128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof buf) abort();
  log_bytes(buf, (size_t)n);
}

/* Hex, so that the log stays one record per line whatever the path holds. */
static const char* hex(const char* s, char* out) {
  static const char digits[] = "0123456789abcdef";
  char* o = out;
  for (const unsigned char* p = (const unsigned char*)s; *p; ++p) {
    *o++ = digits[*p >> 4];
    *o++ = digits[*p & 15];
  }
  *o = '\0';
  return out;
}

/* Ends a logged namespace call: voids its record (K) if it failed, unlocks, keeps errno. */
static int end_logged(int r) {
  int err = errno;
  if (r != 0) log_line("K\n");
  pthread_mutex_unlock(&g_mu);
  errno = err;
  return r;
}

/* ---- paths ---- */

/* The absolute form of `path` relative to `dirfd`, without normalising "..". */
static int absolute(int dirfd, const char* path, char* out) {
  if (path == NULL) return 0;
  if (path[0] == '/') {
    snprintf(out, PATH_MAX, "%s", path);
    return 1;
  }
  char base[PATH_MAX];
  if (dirfd == AT_FDCWD) {
    if (!getcwd(base, sizeof base)) return 0;
  } else {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, base, sizeof base - 1);
    if (n < 0) return 0;
    base[n] = '\0';
  }
  const char* rel = path;
  while (rel[0] == '.' && rel[1] == '/') rel += 2;
  if (strcmp(rel, ".") == 0) rel = "";
  const int n = snprintf(out, PATH_MAX, "%s%s%s", base, rel[0] ? "/" : "", rel);
  return n > 0 && n < PATH_MAX;
}

static int under_root(const char* abs) {
  return strncmp(abs, g_root, g_root_len) == 0 &&
         (abs[g_root_len] == '\0' || abs[g_root_len] == '/');
}

/* Resolves `path` (relative to dirfd) and says whether it is tracked. */
static int tracked_path(int dirfd, const char* path, char* abs) {
  return tracking() && absolute(dirfd, path, abs) && under_root(abs);
}

/* A hard link in the shadow dir keeping `abs` (a regular file), or "-" if there is none. */
static void keep_in_shadow(const char* abs, char* name_out) {
  struct stat st;
  strcpy(name_out, "-");
  if (lstat(abs, &st) != 0 || !S_ISREG(st.st_mode)) return;
  char shadow_path[PATH_MAX];
  for (int tries = 0; tries < 1000; ++tries) {
    char name[64];
    snprintf(name, sizeof name, "%d-%lu", (int)getpid(), ++g_shadow_seq);
    if (snprintf(shadow_path, sizeof shadow_path, "%s/%s", g_shadow, name) >=
        (int)sizeof shadow_path) {
      abort();
    }
    if (real_linkat(AT_FDCWD, abs, AT_FDCWD, shadow_path, 0) == 0) {
      strcpy(name_out, name);
      return;
    }
    if (errno != EEXIST) {
      fprintf(stderr, "powercut_shim: link %s %s: %s\n", abs, shadow_path, strerror(errno));
      abort();
    }
  }
  abort();
}

/* ---- files ---- */

/* Logs the old contents of [off, off+n) that exist (below the current size). */
static void save_range(int fd, const struct fd_info* fi, off_t off, off_t n) {
  struct stat st;
  if (off < 0 || n <= 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || off >= st.st_size) {
    return;
  }
  if (off + n > st.st_size) n = st.st_size - off;
  log_line("W %lu %lu %lld %lld\n", (unsigned long)fi->dev, (unsigned long)fi->ino,
           (long long)off, (long long)n);
  /* Read through a descriptor of our own: `fd` may be write-only. */
  char self_link[64];
  snprintf(self_link, sizeof self_link, "/proc/self/fd/%d", fd);
  int rfd = real_openat(AT_FDCWD, self_link, O_RDONLY | O_CLOEXEC, 0);
  if (rfd < 0) {
    fprintf(stderr, "powercut_shim: cannot read back fd %d: %s\n", fd, strerror(errno));
    abort();
  }
  char buf[65536];
  off_t done = 0;
  while (done < n) {
    size_t chunk = (size_t)(n - done) < sizeof buf ? (size_t)(n - done) : sizeof buf;
    ssize_t r = pread(rfd, buf, chunk, off + done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {  /* shorter than fstat said a moment ago: cannot happen under the lock */
      fprintf(stderr, "powercut_shim: short read back of fd %d\n", fd);
      abort();
    }
    log_bytes(buf, (size_t)r);
    done += r;
  }
  real_close(rfd);
}

/* Whether fd still is the file or directory it was opened as: a descriptor closed behind our
 * back (fclose of an fdopen'd stream, dup2 onto it) is forgotten. */
static int still_tracked(int fd) {
  if (!tracking() || fd < 0 || fd >= MAX_FDS || g_fds[fd].kind == UNTRACKED) return 0;
  struct fd_info* fi = &g_fds[fd];
  struct stat st;
  const int same = fstat(fd, &st) == 0 && st.st_dev == fi->dev && st.st_ino == fi->ino &&
                   (fi->kind == TRACKED_FILE ? S_ISREG(st.st_mode) : S_ISDIR(st.st_mode));
  if (!same) {
    free(fi->path);
    memset(fi, 0, sizeof *fi);
  }
  return same;
}

static struct fd_info* file_info(int fd) {
  return still_tracked(fd) && g_fds[fd].kind == TRACKED_FILE ? &g_fds[fd] : NULL;
}

static int do_open(int dirfd, const char* path, int flags, mode_t mode) {
  char abs[PATH_MAX];
  if (!tracked_path(dirfd, path, abs) || (flags & __O_TMPFILE) == __O_TMPFILE) {
    return real_openat(dirfd, path, flags, mode);
  }
  char h[2 * PATH_MAX + 1];
  pthread_mutex_lock(&g_mu);
  struct stat before;
  const int existed = lstat(abs, &before) == 0;
  const int writable = (flags & O_ACCMODE) != O_RDONLY;
  int logged_create = 0;
  if (!existed && (flags & O_CREAT)) {
    log_line("C %s\n", hex(abs, h));
    logged_create = 1;
  }
  if (existed && S_ISREG(before.st_mode) && writable && (flags & O_TRUNC) &&
      before.st_size > 0) {
    /* Save what O_TRUNC is about to drop, through a reading fd of our own. */
    int rfd = real_openat(AT_FDCWD, abs, O_RDONLY | O_CLOEXEC, 0);
    if (rfd >= 0) {
      struct fd_info tmp = {TRACKED_FILE, 0, before.st_dev, before.st_ino, NULL};
      log_line("F %lu %lu %lld %s\n", (unsigned long)before.st_dev,
               (unsigned long)before.st_ino, (long long)before.st_size, hex(abs, h));
      save_range(rfd, &tmp, 0, before.st_size);
      real_close(rfd);
    }
  }
  int fd = real_openat(dirfd, path, flags, mode);
  if (fd < 0) {
    if (!logged_create) {
      pthread_mutex_unlock(&g_mu);
      return fd;
    }
    return end_logged(fd);
  }
  struct stat st;
  if (fd < MAX_FDS && fstat(fd, &st) == 0) {
    struct fd_info* fi = &g_fds[fd];
    free(fi->path);
    memset(fi, 0, sizeof *fi);
    if (S_ISREG(st.st_mode)) {
      fi->kind = TRACKED_FILE;
      fi->append = (flags & O_APPEND) != 0;
      fi->dev = st.st_dev;
      fi->ino = st.st_ino;
      /* The size before this open's O_TRUNC, if it truncated. */
      const long long seen = existed && S_ISREG(before.st_mode) && before.st_ino == st.st_ino
                                 ? (long long)before.st_size
                                 : (long long)st.st_size;
      log_line("F %lu %lu %lld %s\n", (unsigned long)st.st_dev, (unsigned long)st.st_ino,
               existed ? seen : 0LL, hex(abs, h));
    } else if (S_ISDIR(st.st_mode)) {
      fi->kind = TRACKED_DIR;
      fi->dev = st.st_dev;
      fi->ino = st.st_ino;
      fi->path = strdup(abs);
    }
  }
  pthread_mutex_unlock(&g_mu);
  return fd;
}

static mode_t mode_arg(int flags, va_list ap) {
  return (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

static int open_va(int dirfd, const char* path, int flags, va_list ap) {
  INIT();
  return do_open(dirfd, path, flags, mode_arg(flags, ap));
}
int open(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  int fd = open_va(AT_FDCWD, path, flags, ap);
  va_end(ap);
  return fd;
}
int openat(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  int fd = open_va(dirfd, path, flags, ap);
  va_end(ap);
  return fd;
}
/* _FORTIFY_SOURCE's checked forms: no mode argument. */
int __openat_2(int dirfd, const char* path, int flags) {
  INIT();
  return do_open(dirfd, path, flags, 0);
}
int __open_2(const char* path, int flags) { return __openat_2(AT_FDCWD, path, flags); }
int creat(const char* path, mode_t mode) {
  INIT();
  return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int close(int fd) {
  INIT();
  if (tracking() && fd >= 0 && fd < MAX_FDS && g_fds[fd].kind != UNTRACKED) {
    pthread_mutex_lock(&g_mu);
    free(g_fds[fd].path);
    memset(&g_fds[fd], 0, sizeof g_fds[fd]);
    int r = real_close(fd);
    pthread_mutex_unlock(&g_mu);
    return r;
  }
  return real_close(fd);
}

/* Where a write at the fd's own offset lands. */
static off_t current_offset(int fd, const struct fd_info* fi) {
  if (fi->append) {
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_size : 0;
  }
  return lseek(fd, 0, SEEK_CUR);
}

static size_t iov_total(const struct iovec* iov, int n) {
  size_t t = 0;
  for (int i = 0; i < n; ++i) t += iov[i].iov_len;
  return t;
}

ssize_t write(int fd, const void* buf, size_t n) {
  INIT();
  struct fd_info* fi = file_info(fd);
  if (!fi) return real_write(fd, buf, n);
  pthread_mutex_lock(&g_mu);
  save_range(fd, fi, current_offset(fd, fi), (off_t)n);
  ssize_t r = real_write(fd, buf, n);
  int err = errno;
  pthread_mutex_unlock(&g_mu);
  errno = err;
  return r;
}

static ssize_t do_pwrite(int fd, const void* buf, size_t n, off_t off) {
  struct fd_info* fi = file_info(fd);
  if (!fi) return real_pwrite(fd, buf, n, off);
  pthread_mutex_lock(&g_mu);
  save_range(fd, fi, fi->append ? current_offset(fd, fi) : off, (off_t)n);
  ssize_t r = real_pwrite(fd, buf, n, off);
  int err = errno;
  pthread_mutex_unlock(&g_mu);
  errno = err;
  return r;
}
ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  INIT();
  return do_pwrite(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec* iov, int cnt) {
  INIT();
  struct fd_info* fi = file_info(fd);
  if (!fi) return real_writev(fd, iov, cnt);
  pthread_mutex_lock(&g_mu);
  save_range(fd, fi, current_offset(fd, fi), (off_t)iov_total(iov, cnt));
  ssize_t r = real_writev(fd, iov, cnt);
  int err = errno;
  pthread_mutex_unlock(&g_mu);
  errno = err;
  return r;
}

static ssize_t do_pwritev(int fd, const struct iovec* iov, int cnt, off_t off, int flags,
                          int v2) {
  struct fd_info* fi = file_info(fd);
  if (!fi) return v2 ? real_pwritev2(fd, iov, cnt, off, flags) : real_pwritev(fd, iov, cnt, off);
  pthread_mutex_lock(&g_mu);
  const off_t at = fi->append || off == -1 ? current_offset(fd, fi) : off;
  save_range(fd, fi, at, (off_t)iov_total(iov, cnt));
  ssize_t r = v2 ? real_pwritev2(fd, iov, cnt, off, flags) : real_pwritev(fd, iov, cnt, off);
  int err = errno;
  pthread_mutex_unlock(&g_mu);
  errno = err;
  return r;
}
ssize_t pwritev(int fd, const struct iovec* iov, int cnt, off_t off) {
  INIT();
  return do_pwritev(fd, iov, cnt, off, 0, 0);
}
ssize_t pwritev2(int fd, const struct iovec* iov, int cnt, off_t off, int flags) {
  INIT();
  return do_pwritev(fd, iov, cnt, off, flags, 1);
}

static int do_ftruncate(int fd, off_t len) {
  struct fd_info* fi = file_info(fd);
  if (!fi) return real_ftruncate(fd, len);
  pthread_mutex_lock(&g_mu);
  struct stat st;
  if (fstat(fd, &st) == 0 && len < st.st_size) save_range(fd, fi, len, st.st_size - len);
  int r = real_ftruncate(fd, len);
  int err = errno;
  pthread_mutex_unlock(&g_mu);
  errno = err;
  return r;
}
int ftruncate(int fd, off_t len) {
  INIT();
  return do_ftruncate(fd, len);
}

static int do_fallocate(int fd, int mode, off_t off, off_t len) {
  struct fd_info* fi = file_info(fd);
  /* Plain allocation (with or without KEEP_SIZE) changes no byte that exists. */
  if (!fi || (mode & ~FALLOC_FL_KEEP_SIZE) == 0) return real_fallocate(fd, mode, off, len);
  pthread_mutex_lock(&g_mu);
  struct stat st;
  /* Punching, zeroing, collapsing or inserting: keep everything from `off` on. */
  if (fstat(fd, &st) == 0) save_range(fd, fi, off, st.st_size - off);
  int r = real_fallocate(fd, mode, off, len);
  int err = errno;
  pthread_mutex_unlock(&g_mu);
  errno = err;
  return r;
}
int fallocate(int fd, int mode, off_t off, off_t len) {
  INIT();
  return do_fallocate(fd, mode, off, len);
}

static int do_sync(int fd, int data_only) {
  if (!still_tracked(fd)) {
    return data_only ? real_fdatasync(fd) : real_fsync(fd);
  }
  pthread_mutex_lock(&g_mu);
  int r = data_only ? real_fdatasync(fd) : real_fsync(fd);
  int err = errno;
  if (r == 0) {
    struct fd_info* fi = &g_fds[fd];
    struct stat st;
    if (fi->kind == TRACKED_FILE && fstat(fd, &st) == 0) {
      log_line("S %lu %lu %lld\n", (unsigned long)fi->dev, (unsigned long)fi->ino,
               (long long)st.st_size);
    } else if (fi->kind == TRACKED_DIR) {
      char h[2 * PATH_MAX + 1];
      log_line("Y %s\n", hex(fi->path, h));
    }
  }
  pthread_mutex_unlock(&g_mu);
  errno = err;
  return r;
}
int fsync(int fd) {
  INIT();
  return do_sync(fd, 0);
}
int fdatasync(int fd) {
  INIT();
  return do_sync(fd, 1);
}

/* ---- directories ---- */

static int do_rename(int olddirfd, const char* from, int newdirfd, const char* to,
                     unsigned flags, int which) {
  char a[PATH_MAX], b[PATH_MAX];
  const int ta = tracked_path(olddirfd, from, a);
  const int tb = tracked_path(newdirfd, to, b);
  if (!ta && !tb) {
    if (which == 0) return real_rename(from, to);
    if (which == 1) return real_renameat(olddirfd, from, newdirfd, to);
    return real_renameat2(olddirfd, from, newdirfd, to, flags);
  }
  pthread_mutex_lock(&g_mu);
  char shadow[64], ha[2 * PATH_MAX + 1], hb[2 * PATH_MAX + 1];
  keep_in_shadow(b, shadow);
  log_line("R %s %s %s\n", hex(a, ha), hex(b, hb), shadow);
  int r = which == 0   ? real_rename(from, to)
          : which == 1 ? real_renameat(olddirfd, from, newdirfd, to)
                       : real_renameat2(olddirfd, from, newdirfd, to, flags);
  return end_logged(r);
}
int rename(const char* from, const char* to) {
  INIT();
  return do_rename(AT_FDCWD, from, AT_FDCWD, to, 0, 0);
}
int renameat(int od, const char* from, int nd, const char* to) {
  INIT();
  return do_rename(od, from, nd, to, 0, 1);
}
int renameat2(int od, const char* from, int nd, const char* to, unsigned flags) {
  INIT();
  return do_rename(od, from, nd, to, flags, 2);
}

static int do_unlink(int dirfd, const char* path, int flags) {
  char a[PATH_MAX];
  if (!tracked_path(dirfd, path, a)) return real_unlinkat(dirfd, path, flags);
  pthread_mutex_lock(&g_mu);
  char ha[2 * PATH_MAX + 1];
  if (flags & AT_REMOVEDIR) {
    log_line("D %s\n", hex(a, ha));
  } else {
    char shadow[64];
    keep_in_shadow(a, shadow);
    log_line("U %s %s\n", hex(a, ha), shadow);
  }
  int r = real_unlinkat(dirfd, path, flags);
  return end_logged(r);
}
int unlink(const char* path) {
  INIT();
  return do_unlink(AT_FDCWD, path, 0);
}
int unlinkat(int dirfd, const char* path, int flags) {
  INIT();
  return do_unlink(dirfd, path, flags);
}
int rmdir(const char* path) {
  INIT();
  return do_unlink(AT_FDCWD, path, AT_REMOVEDIR);
}

static int do_mkdir(int dirfd, const char* path, mode_t mode) {
  char a[PATH_MAX];
  if (!tracked_path(dirfd, path, a)) return real_mkdirat(dirfd, path, mode);
  pthread_mutex_lock(&g_mu);
  char ha[2 * PATH_MAX + 1];
  log_line("M %s\n", hex(a, ha));
  int r = real_mkdirat(dirfd, path, mode);
  return end_logged(r);
}
int mkdir(const char* path, mode_t mode) {
  INIT();
  return do_mkdir(AT_FDCWD, path, mode);
}
int mkdirat(int dirfd, const char* path, mode_t mode) {
  INIT();
  return do_mkdir(dirfd, path, mode);
}

static int do_link(int olddirfd, const char* from, int newdirfd, const char* to, int flags) {
  char b[PATH_MAX];
  if (!tracked_path(newdirfd, to, b)) return real_linkat(olddirfd, from, newdirfd, to, flags);
  pthread_mutex_lock(&g_mu);
  char hb[2 * PATH_MAX + 1];
  log_line("C %s\n", hex(b, hb));  /* a new name: undone like a created file */
  int r = real_linkat(olddirfd, from, newdirfd, to, flags);
  return end_logged(r);
}
int link(const char* from, const char* to) {
  INIT();
  return do_link(AT_FDCWD, from, AT_FDCWD, to, 0);
}
int linkat(int od, const char* from, int nd, const char* to, int flags) {
  INIT();
  return do_link(od, from, nd, to, flags);
}

/* The 64-bit offset names are the same functions on LP64 (off_t is 64 bits). */
_Static_assert(sizeof(off_t) == 8, "the *64 aliases below assume a 64-bit off_t");
int open64(const char*, int, ...) __attribute__((alias("open")));
int openat64(int, const char*, int, ...) __attribute__((alias("openat")));
int __open64_2(const char*, int) __attribute__((alias("__open_2")));
int __openat64_2(int, const char*, int) __attribute__((alias("__openat_2")));
int creat64(const char*, mode_t) __attribute__((alias("creat")));
ssize_t pwrite64(int, const void*, size_t, off_t) __attribute__((alias("pwrite")));
ssize_t pwritev64(int, const struct iovec*, int, off_t) __attribute__((alias("pwritev")));
ssize_t pwritev64v2(int, const struct iovec*, int, off_t, int) __attribute__((alias("pwritev2")));
int ftruncate64(int, off_t) __attribute__((alias("ftruncate")));
int fallocate64(int, int, off_t, off_t) __attribute__((alias("fallocate")));
