/*
 * The few POSIX calls a faithful restore needs and Node.js does not offer: extended
 * attributes (which also carry POSIX ACLs and file capabilities), nanosecond timestamps
 * (fs.utimes takes a double of seconds: ~0.25 us of resolution), and device nodes and FIFOs
 * (mknod). Every call is synchronous and thin: the callers already run them on worker
 * threads or in per-entry loops where a thread-pool round trip would cost more than the call.
 *
 * A target is either a path (a Buffer: names are bytes) or an open file descriptor (a number).
 * Paths are never followed when they name a symbolic link (l*xattr, AT_SYMLINK_NOFOLLOW).
 * Errors are thrown as Error objects with `code` (libuv's name, as node:fs uses: "ENOTSUP",
 * "EPERM"), `errno` and `syscall`, so that callers match on codes, never on messages.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <dirent.h>
#include <node_api.h>
#include <unistd.h>
#include <uv.h>

#define CHECK(call) do { if ((call) != napi_ok) return NULL; } while (0)

static napi_value throw_errno(napi_env env, int err, const char *syscall) {
  const char *name = uv_err_name(-err);
  char message[256];
  snprintf(message, sizeof message, "%s: %s, %s", name, strerror(err), syscall);
  napi_value code, msg, error, errnum, sys;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &error);
  napi_set_named_property(env, error, "code", code);
  napi_create_int32(env, -err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys);
  napi_set_named_property(env, error, "syscall", sys);
  napi_throw(env, error);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

/* A target: a path copied into a NUL-terminated string, or a descriptor. */
typedef struct { char *path; int fd; } target_t;

static int get_target(napi_env env, napi_value v, target_t *t) {
  napi_valuetype type;
  t->path = NULL;
  t->fd = -1;
  if (napi_typeof(env, v, &type) != napi_ok) return 0;
  if (type == napi_number) {
    int32_t fd;
    if (napi_get_value_int32(env, v, &fd) != napi_ok || fd < 0) return 0;
    t->fd = fd;
    return 1;
  }
  bool is_buffer = false;
  napi_is_buffer(env, v, &is_buffer);
  if (!is_buffer) return 0;
  void *data;
  size_t length;
  if (napi_get_buffer_info(env, v, &data, &length) != napi_ok || length == 0 || length >= PATH_MAX * 4) return 0;
  if (memchr(data, 0, length)) return 0;
  t->path = malloc(length + 1);
  if (!t->path) return 0;
  memcpy(t->path, data, length);
  t->path[length] = 0;
  return 1;
}

/* A name given as a Buffer or a string, NUL-terminated. */
static char *get_name(napi_env env, napi_value v) {
  napi_valuetype type;
  if (napi_typeof(env, v, &type) != napi_ok) return NULL;
  if (type == napi_string) {
    size_t length;
    if (napi_get_value_string_utf8(env, v, NULL, 0, &length) != napi_ok || length == 0 || length > XATTR_NAME_MAX) return NULL;
    char *name = malloc(length + 1);
    if (name) napi_get_value_string_utf8(env, v, name, length + 1, &length);
    return name;
  }
  bool is_buffer = false;
  napi_is_buffer(env, v, &is_buffer);
  if (!is_buffer) return NULL;
  void *data;
  size_t length;
  if (napi_get_buffer_info(env, v, &data, &length) != napi_ok || length == 0 || length > XATTR_NAME_MAX || memchr(data, 0, length)) return NULL;
  char *name = malloc(length + 1);
  if (!name) return NULL;
  memcpy(name, data, length);
  name[length] = 0;
  return name;
}

static ssize_t do_list(const target_t *t, char *buf, size_t size) {
  return t->path ? llistxattr(t->path, buf, size) : flistxattr(t->fd, buf, size);
}

static ssize_t do_get(const target_t *t, const char *name, void *buf, size_t size) {
  return t->path ? lgetxattr(t->path, name, buf, size) : fgetxattr(t->fd, name, buf, size);
}

/*
 * listXattrs(target) -> [[name: Buffer, value: Buffer], ...]
 * Every attribute the caller may read, with its value. An attribute removed between the list
 * and the read is left out (ENODATA); a list that grew in between is read again (ERANGE).
 */
static napi_value list_xattrs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  target_t t;
  if (argc < 1 || !get_target(env, argv[0], &t)) return throw_type(env, "listXattrs(target): target is a path Buffer or a descriptor");
  char *names = NULL;
  ssize_t length;
  for (;;) {
    length = do_list(&t, NULL, 0);
    if (length <= 0) break;
    char *grown = realloc(names, (size_t)length);
    if (!grown) { length = -1; errno = ENOMEM; break; }
    names = grown;
    ssize_t got = do_list(&t, names, (size_t)length);
    if (got >= 0) { length = got; break; }
    if (errno != ERANGE) { length = -1; break; }
  }
  napi_value result;
  napi_create_array(env, &result);
  const int by_path = t.path != NULL;
  if (length < 0) {
    int err = errno;
    free(names);
    free(t.path);
    return throw_errno(env, err, by_path ? "llistxattr" : "flistxattr");
  }
  uint32_t count = 0;
  char *value = NULL;
  size_t value_size = 0;
  for (ssize_t at = 0; at < length;) {
    const char *name = names + at;
    size_t name_length = strnlen(name, (size_t)(length - at));
    at += (ssize_t)name_length + 1;
    if (name_length == 0) continue;
    ssize_t got;
    for (;;) {
      /* The size first: a read into a buffer too small fails with ERANGE, never truncates. */
      got = do_get(&t, name, NULL, 0);
      if (got < 0) break;
      if ((size_t)got + 1 > value_size) {
        char *grown = realloc(value, (size_t)got + 1);
        if (!grown) { got = -1; errno = ENOMEM; break; }
        value = grown;
        value_size = (size_t)got + 1;
      }
      got = do_get(&t, name, value, value_size);
      if (got >= 0 || errno != ERANGE) break;
    }
    if (got < 0) {
      if (errno == ENODATA) continue;
      int err = errno;
      free(value);
      free(names);
      free(t.path);
      return throw_errno(env, err, by_path ? "lgetxattr" : "fgetxattr");
    }
    napi_value pair, n, v;
    void *copy;
    napi_create_array_with_length(env, 2, &pair);
    napi_create_buffer_copy(env, name_length, name, &copy, &n);
    napi_create_buffer_copy(env, (size_t)got, value, &copy, &v);
    napi_set_element(env, pair, 0, n);
    napi_set_element(env, pair, 1, v);
    napi_set_element(env, result, count++, pair);
  }
  free(value);
  free(names);
  free(t.path);
  return result;
}

/* setXattr(target, name, value: Buffer) */
static napi_value set_xattr(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  target_t t;
  if (argc < 3 || !get_target(env, argv[0], &t)) return throw_type(env, "setXattr(target, name, value): target is a path Buffer or a descriptor");
  char *name = get_name(env, argv[1]);
  void *data;
  size_t length;
  bool is_buffer = false;
  napi_is_buffer(env, argv[2], &is_buffer);
  if (!name || !is_buffer || napi_get_buffer_info(env, argv[2], &data, &length) != napi_ok) {
    free(name);
    free(t.path);
    return throw_type(env, "setXattr(target, name, value): name is a non-empty string or Buffer, value a Buffer");
  }
  const int by_path = t.path != NULL;
  int rc = by_path ? lsetxattr(t.path, name, data, length, 0) : fsetxattr(t.fd, name, data, length, 0);
  int err = errno;
  free(name);
  free(t.path);
  if (rc != 0) return throw_errno(env, err, by_path ? "lsetxattr" : "fsetxattr");
  return NULL;
}

/* removeXattr(target, name): a missing attribute is not an error (idempotent). */
static napi_value remove_xattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  target_t t;
  if (argc < 2 || !get_target(env, argv[0], &t)) return throw_type(env, "removeXattr(target, name): target is a path Buffer or a descriptor");
  char *name = get_name(env, argv[1]);
  if (!name) {
    free(t.path);
    return throw_type(env, "removeXattr(target, name): name is a non-empty string or Buffer");
  }
  const int by_path = t.path != NULL;
  int rc = by_path ? lremovexattr(t.path, name) : fremovexattr(t.fd, name);
  int err = errno;
  free(name);
  free(t.path);
  if (rc != 0 && err != ENODATA) return throw_errno(env, err, by_path ? "lremovexattr" : "fremovexattr");
  return NULL;
}

static int get_time(napi_env env, napi_value sec, napi_value nsec, struct timespec *ts) {
  int64_t s, ns;
  if (napi_get_value_int64(env, sec, &s) != napi_ok || napi_get_value_int64(env, nsec, &ns) != napi_ok) return 0;
  if (ns < 0 || ns > 999999999) return 0;
  ts->tv_sec = (time_t)s;
  ts->tv_nsec = (long)ns;
  return 1;
}

/*
 * setTimes(target, atimeSec, atimeNsec, mtimeSec, mtimeNsec): exact to the nanosecond; a path
 * naming a symbolic link sets the link's own times.
 */
static napi_value set_times(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  target_t t;
  struct timespec ts[2];
  if (argc < 5 || !get_target(env, argv[0], &t)) return throw_type(env, "setTimes(target, aSec, aNsec, mSec, mNsec): target is a path Buffer or a descriptor");
  if (!get_time(env, argv[1], argv[2], &ts[0]) || !get_time(env, argv[3], argv[4], &ts[1])) {
    free(t.path);
    return throw_type(env, "setTimes: seconds are integers, nanoseconds integers in 0..999999999");
  }
  const int by_path = t.path != NULL;
  int rc = by_path ? utimensat(AT_FDCWD, t.path, ts, AT_SYMLINK_NOFOLLOW) : futimens(t.fd, ts);
  int err = errno;
  free(t.path);
  if (rc != 0) return throw_errno(env, err, by_path ? "utimensat" : "futimens");
  return NULL;
}

/* mknod(path, mode, major, minor): a FIFO (S_IFIFO in mode) or a device node (S_IFCHR, S_IFBLK). */
static napi_value make_node(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  target_t t;
  uint32_t mode, major_n, minor_n;
  t.path = NULL;
  if (argc < 4 || !get_target(env, argv[0], &t) || !t.path) {
    free(t.path);
    return throw_type(env, "mknod(path, mode, major, minor): path is a Buffer");
  }
  if (napi_get_value_uint32(env, argv[1], &mode) != napi_ok || napi_get_value_uint32(env, argv[2], &major_n) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &minor_n) != napi_ok) {
    free(t.path);
    return throw_type(env, "mknod: mode, major and minor are unsigned integers");
  }
  mode_t kind = mode & S_IFMT;
  if (kind != S_IFIFO && kind != S_IFCHR && kind != S_IFBLK) {
    free(t.path);
    return throw_type(env, "mknod: mode must name a FIFO, a character or a block device");
  }
  int rc = mknod(t.path, (mode_t)mode, kind == S_IFIFO ? 0 : makedev(major_n, minor_n));
  int err = errno;
  free(t.path);
  if (rc != 0) return throw_errno(env, err, "mknod");
  return NULL;
}

/* Names of a folder, for sorting: bytes and lengths, compared as Buffer.compare does. */
typedef struct { char *name; size_t length; } name_t;

static int compare_names(const void *a, const void *b) {
  const name_t *x = a, *y = b;
  size_t n = x->length < y->length ? x->length : y->length;
  int c = memcmp(x->name, y->name, n);
  if (c != 0) return c;
  return x->length < y->length ? -1 : x->length > y->length ? 1 : 0;
}

#define SCAN_FIELDS 11
#define SCAN_EXTRA 3

/*
 * scanDir(path) -> { names: Buffer, offsets: Uint32Array(n + 1), stats: Float64Array(n * 11),
 *                    extra: Float64Array(n * 3) }
 * A folder's entries in byte order with their lstat, in one call and a few allocations: the
 * walk of a tree of many files costed a BigIntStats object (and its garbage) per entry.
 * stats per entry: mode, uid, gid, size, mtime s, mtime ns, ctime s, ctime ns, ino, rdev
 * major, rdev minor (what says an entry changed; never the access time, which reading moves).
 * extra per entry: nlink, dev, errno of its lstat (0, or ENOENT for an entry removed since).
 */
static napi_value scan_dir(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  target_t t;
  t.path = NULL;
  if (argc < 1 || !get_target(env, argv[0], &t) || !t.path) {
    free(t.path);
    return throw_type(env, "scanDir(path): path is a Buffer");
  }
  int dfd = open(t.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    int err = errno;
    free(t.path);
    return throw_errno(env, err, "opendir");
  }
  free(t.path);
  DIR *dir = fdopendir(dfd);
  if (!dir) {
    int err = errno;
    close(dfd);
    return throw_errno(env, err, "fdopendir");
  }
  size_t count = 0, capacity = 256, bytes = 0;
  name_t *names = malloc(capacity * sizeof *names);
  struct dirent *d;
  errno = 0;
  while (names && (d = readdir(dir)) != NULL) {
    if (d->d_name[0] == '.' && (d->d_name[1] == 0 || (d->d_name[1] == '.' && d->d_name[2] == 0))) continue;
    if (count == capacity) {
      name_t *grown = realloc(names, (capacity *= 2) * sizeof *names);
      if (!grown) { free(names); names = NULL; break; }
      names = grown;
    }
    size_t length = strlen(d->d_name);
    char *copy = malloc(length);
    if (!copy) break;
    memcpy(copy, d->d_name, length);
    names[count].name = copy;
    names[count].length = length;
    count++;
    bytes += length;
  }
  int err = errno;
  if (!names || err != 0) {
    if (names) for (size_t i = 0; i < count; i++) free(names[i].name);
    free(names);
    closedir(dir);
    return throw_errno(env, names ? err : ENOMEM, "readdir");
  }
  qsort(names, count, sizeof *names, compare_names);

  napi_value result, names_buf, offsets_ab, offsets, stats_ab, stats, extra_ab, extra;
  void *data;
  char *name_bytes;
  uint32_t *off;
  double *st, *ex;
  napi_create_object(env, &result);
  napi_create_buffer(env, bytes, (void **)&name_bytes, &names_buf);
  napi_create_arraybuffer(env, (count + 1) * sizeof(uint32_t), &data, &offsets_ab);
  off = data;
  napi_create_arraybuffer(env, count * SCAN_FIELDS * sizeof(double), &data, &stats_ab);
  st = data;
  napi_create_arraybuffer(env, count * SCAN_EXTRA * sizeof(double), &data, &extra_ab);
  ex = data;
  size_t at = 0;
  for (size_t i = 0; i < count; i++) {
    off[i] = (uint32_t)at;
    memcpy(name_bytes + at, names[i].name, names[i].length);
    at += names[i].length;
    /* fstatat needs a NUL-terminated name: reuse a stack buffer (NAME_MAX + 1). */
    char z[NAME_MAX + 1];
    size_t n = names[i].length <= NAME_MAX ? names[i].length : NAME_MAX;
    memcpy(z, names[i].name, n);
    z[n] = 0;
    free(names[i].name);
    struct stat s;
    double *f = st + i * SCAN_FIELDS, *e = ex + i * SCAN_EXTRA;
    if (fstatat(dirfd(dir), z, &s, AT_SYMLINK_NOFOLLOW) != 0) {
      for (int k = 0; k < SCAN_FIELDS; k++) f[k] = 0;
      e[0] = 0; e[1] = 0; e[2] = errno;
      continue;
    }
    f[0] = s.st_mode; f[1] = s.st_uid; f[2] = s.st_gid; f[3] = (double)s.st_size;
    f[4] = (double)s.st_mtim.tv_sec; f[5] = (double)s.st_mtim.tv_nsec;
    f[6] = (double)s.st_ctim.tv_sec; f[7] = (double)s.st_ctim.tv_nsec;
    f[8] = (double)s.st_ino; f[9] = major(s.st_rdev); f[10] = minor(s.st_rdev);
    e[0] = (double)s.st_nlink; e[1] = (double)s.st_dev; e[2] = 0;
  }
  off[count] = (uint32_t)at;
  free(names);
  closedir(dir);
  napi_create_typedarray(env, napi_uint32_array, count + 1, offsets_ab, 0, &offsets);
  napi_create_typedarray(env, napi_float64_array, count * SCAN_FIELDS, stats_ab, 0, &stats);
  napi_create_typedarray(env, napi_float64_array, count * SCAN_EXTRA, extra_ab, 0, &extra);
  napi_set_named_property(env, result, "names", names_buf);
  napi_set_named_property(env, result, "offsets", offsets);
  napi_set_named_property(env, result, "stats", stats);
  napi_set_named_property(env, result, "extra", extra);
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    { "listXattrs", NULL, list_xattrs, NULL, NULL, NULL, napi_default, NULL },
    { "setXattr", NULL, set_xattr, NULL, NULL, NULL, napi_default, NULL },
    { "removeXattr", NULL, remove_xattr, NULL, NULL, NULL, napi_default, NULL },
    { "setTimes", NULL, set_times, NULL, NULL, NULL, napi_default, NULL },
    { "mknod", NULL, make_node, NULL, NULL, NULL, napi_default, NULL },
    { "scanDir", NULL, scan_dir, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
