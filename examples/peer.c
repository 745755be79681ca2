// An FdChannel peer in C, with only libc and the kernel's uapi headers: it
// speaks the frame format of docs/fd-channel-wire-format.md over fd 3, the
// end of a socketpair its Node parent put in its stdio (as FdChannel.fromFd(3)
// children do). test/guest/peers.test.ts drives it.
//
//   gcc -Wall -Wextra -Werror -O2 -o peer examples/peer.c
//
// Messages it takes (each {"message": ..., "kinds": [...]}):
//   {op:'hello'}: replies {op:'hello', peer:'peer.c'}
//   {op:'check', length} + [dmabuf, syncfile]: waits for the sync_file, reads
//     the first `length` bytes, replies {op:'checked', length, fnv1a32, first}
//   {op:'make', seed, length}: replies {op:'yours', seed, length} + [a udmabuf
//     it made and filled with the seed's pattern, a sw_sync fence it holds]
//   {op:'signal'}: signals that fence
//   {op:'malformed', how}: sends a bad frame on purpose (see send_malformed)
// It exits 0 at the end of the stream, 1 with a message on stderr on anything
// else.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/dma-buf.h>
#include <linux/magic.h>
#include <linux/sync_file.h>
#include <linux/udmabuf.h>

// sw_sync's ioctls are not uapi: they live in drivers/dma-buf/sw_sync.c,
// behind debugfs. These are that file's definitions.
struct sw_sync_create_fence_data {
  __u32 value;
  char name[32];
  __s32 fence;  // out
};
#define SW_SYNC_IOC_MAGIC 'W'
#define SW_SYNC_IOC_CREATE_FENCE _IOWR(SW_SYNC_IOC_MAGIC, 0, struct sw_sync_create_fence_data)
#define SW_SYNC_IOC_INC _IOW(SW_SYNC_IOC_MAGIC, 1, __u32)

// The frame format, version 1.
#define FRAME_MAGIC 0x44424348u  // "DBCH"
#define HEADER_SIZE 12
#define MAX_JSON_BYTES (64u * 1024 * 1024)
#define MAX_HANDLES 253  // SCM_MAX_FD
// This peer's own limit on fds read but not yet taken by a frame.
#define MAX_QUEUED_FDS 1024

static const char *self = "peer.c";

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *format, ...) {
  va_list args;
  va_start(args, format);
  fprintf(stderr, "%s: ", self);
  vfprintf(stderr, format, args);
  fputc('\n', stderr);
  va_end(args);
  exit(1);
}

static void die_errno(const char *what) { die("%s: %s", what, strerror(errno)); }

// ---- JSON: just enough to read the parent's messages -----------------------

enum json_type { JSON_NULL,
                 JSON_BOOL,
                 JSON_NUMBER,
                 JSON_STRING,
                 JSON_ARRAY,
                 JSON_OBJECT };

struct json {
  enum json_type type;
  double number;
  char *string;        // JSON_STRING's text; a member's key lives in `key`
  char *key;           // set on the members of an object
  struct json *first;  // an array's or object's first item
  struct json *next;   // the next item of the same array or object
};

struct parser {
  const char *at, *end;
  struct json *nodes;
  size_t used, capacity;
  char *text;  // decoded strings, never longer than the input
  size_t text_used;
};

static void skip_space(struct parser *p) {
  while (p->at < p->end && (*p->at == ' ' || *p->at == '\t' || *p->at == '\n' || *p->at == '\r')) p->at++;
}

static struct json *parse_value(struct parser *p, int depth);

static void put_utf8(struct parser *p, uint32_t code) {
  char *out = p->text + p->text_used;
  if (code < 0x80) {
    out[0] = (char)code;
    p->text_used += 1;
  } else if (code < 0x800) {
    out[0] = (char)(0xc0 | (code >> 6));
    out[1] = (char)(0x80 | (code & 0x3f));
    p->text_used += 2;
  } else if (code < 0x10000) {
    out[0] = (char)(0xe0 | (code >> 12));
    out[1] = (char)(0x80 | ((code >> 6) & 0x3f));
    out[2] = (char)(0x80 | (code & 0x3f));
    p->text_used += 3;
  } else {
    out[0] = (char)(0xf0 | (code >> 18));
    out[1] = (char)(0x80 | ((code >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((code >> 6) & 0x3f));
    out[3] = (char)(0x80 | (code & 0x3f));
    p->text_used += 4;
  }
}

static int hex4(struct parser *p, uint32_t *out) {
  if (p->end - p->at < 4) return 0;
  *out = 0;
  for (int i = 0; i < 4; i++) {
    char c = *p->at++;
    int digit = -1;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    }
    if (digit < 0) return 0;
    *out = *out << 4 | (uint32_t)digit;
  }
  return 1;
}

// A string at p->at (its opening quote), decoded into p->text; NULL if malformed.
static char *parse_string(struct parser *p) {
  if (p->at >= p->end || *p->at != '"') return NULL;
  p->at++;
  char *start = p->text + p->text_used;
  while (p->at < p->end && *p->at != '"') {
    unsigned char c = (unsigned char)*p->at++;
    if (c < 0x20) return NULL;
    if (c != '\\') {
      p->text[p->text_used++] = (char)c;
      continue;
    }
    if (p->at >= p->end) return NULL;
    char escape = *p->at++;
    const char *simple = strchr("\"\\/bfnrt", escape);
    if (escape != '\0' && simple != NULL) {
      p->text[p->text_used++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
      continue;
    }
    uint32_t code, low;
    if (escape != 'u' || !hex4(p, &code)) return NULL;
    if (code >= 0xd800 && code < 0xdc00) {
      // A surrogate pair: \uD8xx\uDCxx is one code point.
      if (p->end - p->at < 6 || p->at[0] != '\\' || p->at[1] != 'u') return NULL;
      p->at += 2;
      if (!hex4(p, &low) || low < 0xdc00 || low >= 0xe000) return NULL;
      code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
    } else if (code >= 0xdc00 && code < 0xe000) {
      return NULL;
    }
    put_utf8(p, code);
  }
  if (p->at >= p->end) return NULL;
  p->at++;
  p->text[p->text_used++] = '\0';
  return start;
}

static int parse_number(struct parser *p, double *out) {
  const char *start = p->at;
  if (p->at < p->end && *p->at == '-') p->at++;
  if (p->at >= p->end) return 0;
  if (*p->at == '0') {
    p->at++;
  } else if (*p->at >= '1' && *p->at <= '9') {
    while (p->at < p->end && *p->at >= '0' && *p->at <= '9') p->at++;
  } else {
    return 0;
  }
  if (p->at < p->end && *p->at == '.') {
    const char *digits = ++p->at;
    while (p->at < p->end && *p->at >= '0' && *p->at <= '9') p->at++;
    if (p->at == digits) return 0;
  }
  if (p->at < p->end && (*p->at == 'e' || *p->at == 'E')) {
    p->at++;
    if (p->at < p->end && (*p->at == '+' || *p->at == '-')) p->at++;
    const char *digits = p->at;
    while (p->at < p->end && *p->at >= '0' && *p->at <= '9') p->at++;
    if (p->at == digits) return 0;
  }
  // strtod needs a terminated string: copy the validated digits out.
  char digits[64];
  size_t length = (size_t)(p->at - start);
  if (length >= sizeof digits) return 0;
  memcpy(digits, start, length);
  digits[length] = '\0';
  *out = strtod(digits, NULL);
  return 1;
}

static int literal(struct parser *p, const char *word) {
  size_t length = strlen(word);
  if ((size_t)(p->end - p->at) < length || memcmp(p->at, word, length) != 0) return 0;
  p->at += length;
  return 1;
}

static struct json *parse_value(struct parser *p, int depth) {
  if (depth > 32 || p->used == p->capacity) return NULL;
  skip_space(p);
  if (p->at >= p->end) return NULL;
  struct json *value = &p->nodes[p->used++];
  memset(value, 0, sizeof *value);
  char c = *p->at;
  if (c == '{' || c == '[') {
    value->type = c == '{' ? JSON_OBJECT : JSON_ARRAY;
    p->at++;
    skip_space(p);
    if (p->at < p->end && *p->at == (c == '{' ? '}' : ']')) {
      p->at++;
      return value;
    }
    struct json **link = &value->first;
    for (;;) {
      char *key = NULL;
      if (c == '{') {
        skip_space(p);
        if ((key = parse_string(p)) == NULL) return NULL;
        skip_space(p);
        if (p->at >= p->end || *p->at++ != ':') return NULL;
      }
      struct json *item = parse_value(p, depth + 1);
      if (item == NULL) return NULL;
      item->key = key;
      *link = item;
      link = &item->next;
      skip_space(p);
      if (p->at >= p->end) return NULL;
      char separator = *p->at++;
      if (separator == ',') continue;
      if (separator == (c == '{' ? '}' : ']')) return value;
      return NULL;
    }
  }
  if (c == '"') {
    value->type = JSON_STRING;
    return (value->string = parse_string(p)) ? value : NULL;
  }
  if (literal(p, "true") || literal(p, "false")) {
    value->type = JSON_BOOL;
    value->number = p->at[-1] == 'e' && p->at[-2] == 'u';  // "true" ends in "ue", "false" does not
    return value;
  }
  if (literal(p, "null")) return value;
  value->type = JSON_NUMBER;
  return parse_number(p, &value->number) ? value : NULL;
}

// Parses a whole document into `p`'s pools; NULL if it is not JSON.
static struct json *parse_json(struct parser *p, const char *text, size_t length) {
  p->at = text;
  p->end = text + length;
  p->capacity = length + 1;  // every value takes at least one byte of input
  p->nodes = calloc(p->capacity, sizeof *p->nodes);
  p->text = malloc(length + 1);
  if (p->nodes == NULL || p->text == NULL) die("out of memory for a %zu-byte message", length);
  p->used = p->text_used = 0;
  struct json *root = parse_value(p, 0);
  skip_space(p);
  return root != NULL && p->at == p->end ? root : NULL;
}

static void free_json(struct parser *p) {
  free(p->nodes);
  free(p->text);
}

static struct json *member(const struct json *object, const char *key) {
  if (object == NULL || object->type != JSON_OBJECT) return NULL;
  for (struct json *item = object->first; item != NULL; item = item->next)
    if (strcmp(item->key, key) == 0) return item;
  return NULL;
}

static const char *string_member(const struct json *object, const char *key) {
  struct json *value = member(object, key);
  if (value == NULL || value->type != JSON_STRING) die("the message has no string \"%s\"", key);
  return value->string;
}

static uint64_t integer_member(const struct json *object, const char *key, uint64_t min, uint64_t max) {
  struct json *value = member(object, key);
  if (value == NULL || value->type != JSON_NUMBER || value->number < (double)min || value->number > (double)max || value->number != (double)(uint64_t)value->number)
    die("the message's \"%s\" is not an integer from %llu to %llu", key, (unsigned long long)min, (unsigned long long)max);
  return (uint64_t)value->number;
}

// ---- the channel -----------------------------------------------------------

struct channel {
  int fd;
  unsigned char *input;
  size_t length, capacity;
  int fds[MAX_QUEUED_FDS];  // received, in order, not yet taken by a frame
  size_t fd_count;
};

struct frame {
  char *json;
  uint32_t json_length;
  int fds[MAX_HANDLES];
  uint32_t fd_count;
};

static uint32_t read_u32le(const unsigned char *bytes) {
  return (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8 | (uint32_t)bytes[2] << 16 | (uint32_t)bytes[3] << 24;
}

static void write_u32le(unsigned char *bytes, uint32_t value) {
  for (int i = 0; i < 4; i++) bytes[i] = (unsigned char)(value >> (8 * i));
}

// One recvmsg: bytes onto the input, fds onto the queue. 0 at the end of the stream.
static size_t read_some(struct channel *ch) {
  if (ch->capacity - ch->length < 64 * 1024) {
    ch->capacity = ch->capacity * 2 + 64 * 1024;
    if ((ch->input = realloc(ch->input, ch->capacity)) == NULL) die("out of memory for input");
  }
  struct iovec iov = {.iov_base = ch->input + ch->length, .iov_len = ch->capacity - ch->length};
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(sizeof(int) * MAX_HANDLES)];
  } control;
  struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.bytes, .msg_controllen = sizeof control.bytes};
  ssize_t received;
  do received = recvmsg(ch->fd, &message, MSG_CMSG_CLOEXEC);
  while (received < 0 && errno == EINTR);
  if (received < 0) die_errno("recvmsg");
  for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof fd);
      if (ch->fd_count == MAX_QUEUED_FDS) die("more than %d fds waiting for their frames", MAX_QUEUED_FDS);
      ch->fds[ch->fd_count++] = fd;
    }
  }
  if (message.msg_flags & MSG_CTRUNC) die("the kernel dropped fds sent to this end (MSG_CTRUNC)");
  ch->length += (size_t)received;
  return (size_t)received;
}

// The next frame; 0 at an end of stream between frames.
static int next_frame(struct channel *ch, struct frame *out) {
  for (;;) {
    if (ch->length >= HEADER_SIZE) {
      uint32_t magic = read_u32le(ch->input), json_length = read_u32le(ch->input + 4), handles = read_u32le(ch->input + 8);
      if (magic != FRAME_MAGIC) die("a frame with magic 0x%08x, not 0x%08x (DBCH, version 1)", magic, FRAME_MAGIC);
      if (json_length > MAX_JSON_BYTES || handles > MAX_HANDLES) die("a frame announcing %u bytes and %u handles, beyond the limits", json_length, handles);
      // The fds came with the frame's first byte, which is in: all are here.
      if (ch->fd_count < handles) die("a frame announcing %u handles came with %zu fds", handles, ch->fd_count);
      if (ch->length >= HEADER_SIZE + (size_t)json_length) {
        out->json_length = json_length;
        if ((out->json = malloc(json_length + 1)) == NULL) die("out of memory for a %u-byte message", json_length);
        memcpy(out->json, ch->input + HEADER_SIZE, json_length);
        out->json[json_length] = '\0';
        out->fd_count = handles;
        memcpy(out->fds, ch->fds, handles * sizeof(int));
        memmove(ch->fds, ch->fds + handles, (ch->fd_count - handles) * sizeof(int));
        ch->fd_count -= handles;
        memmove(ch->input, ch->input + HEADER_SIZE + json_length, ch->length - HEADER_SIZE - json_length);
        ch->length -= HEADER_SIZE + json_length;
        return 1;
      }
    }
    if (read_some(ch) == 0) {
      if (ch->length > 0 || ch->fd_count > 0) die("the stream ended inside a frame (%zu bytes, %zu fds left)", ch->length, ch->fd_count);
      return 0;
    }
  }
}

// Writes all of `bytes`; the fds go with the first byte and never again.
static void send_bytes(struct channel *ch, const unsigned char *bytes, size_t length, const int *fds, size_t fd_count) {
  size_t sent = 0;
  while (sent < length) {
    struct iovec iov = {.iov_base = (void *)(bytes + sent), .iov_len = length - sent};
    union {
      struct cmsghdr align;
      char bytes[CMSG_SPACE(sizeof(int) * MAX_HANDLES)];
    } control;
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1};
    if (sent == 0 && fd_count > 0) {
      message.msg_control = control.bytes;
      message.msg_controllen = CMSG_SPACE(sizeof(int) * fd_count);
      struct cmsghdr *header = CMSG_FIRSTHDR(&message);
      header->cmsg_level = SOL_SOCKET;
      header->cmsg_type = SCM_RIGHTS;
      header->cmsg_len = CMSG_LEN(sizeof(int) * fd_count);
      memcpy(CMSG_DATA(header), fds, sizeof(int) * fd_count);
    }
    ssize_t written = sendmsg(ch->fd, &message, MSG_NOSIGNAL);
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) die_errno("sendmsg");
    sent += (size_t)written;
  }
}

static unsigned char *frame_bytes(uint32_t magic, const char *json, uint32_t json_length, uint32_t handles, size_t *length) {
  *length = HEADER_SIZE + (size_t)json_length;
  unsigned char *bytes = malloc(*length);
  if (bytes == NULL) die("out of memory for a frame");
  write_u32le(bytes, magic);
  write_u32le(bytes + 4, json_length);
  write_u32le(bytes + 8, handles);
  memcpy(bytes + HEADER_SIZE, json, json_length);
  return bytes;
}

// Sends {"message": <message>, "kinds": [<kinds>]} with `fds`; `kinds` is
// already JSON ("\"dmabuf\",\"syncfile\"").
static void send_message(struct channel *ch, const char *message, const char *kinds, const int *fds, size_t fd_count) {
  char *json;
  int json_length = asprintf(&json, "{\"message\":%s,\"kinds\":[%s]}", message, kinds);
  if (json_length < 0) die("out of memory for a message");
  size_t length;
  unsigned char *bytes = frame_bytes(FRAME_MAGIC, json, (uint32_t)json_length, (uint32_t)fd_count, &length);
  send_bytes(ch, bytes, length, fds, fd_count);
  free(bytes);
  free(json);
}

// ---- the work --------------------------------------------------------------

static void expect_kinds(const struct json *root, const struct frame *frame, const char *const *kinds, size_t count) {
  struct json *list = member(root, "kinds");
  if (list == NULL || list->type != JSON_ARRAY) die("the frame has no \"kinds\" array");
  size_t index = 0;
  for (struct json *kind = list->first; kind != NULL; kind = kind->next, index++) {
    if (kind->type != JSON_STRING) die("kinds[%zu] is not a string", index);
    if (index >= count || strcmp(kind->string, kinds[index]) != 0) die("kinds[%zu] is \"%s\", expected %s", index, kind->string, index < count ? kinds[index] : "no more handles");
  }
  if (index != count) die("%zu handle kinds, expected %zu", index, count);
  if (frame->fd_count != count) die("%u fds, expected %zu", frame->fd_count, count);
}

static void check_is_dmabuf(int fd) {
  struct statfs fs;
  if (fstatfs(fd, &fs) < 0) die_errno("fstatfs of the dmabuf");
  if (fs.f_type != DMA_BUF_MAGIC) die("the fd sent as a dmabuf is not one (file system magic 0x%lx)", (unsigned long)fs.f_type);
}

// The sync_file's status: 1 signalled, 0 active, a negative errno when signalled with an error.
static int sync_file_status(int fd) {
  struct sync_file_info info;
  memset(&info, 0, sizeof info);
  if (ioctl(fd, SYNC_IOC_FILE_INFO, &info) < 0) die("the fd sent as a syncfile is not one (SYNC_IOC_FILE_INFO: %s)", strerror(errno));
  return info.status;
}

static void cpu_access(int dmabuf, __u64 flags) {
  struct dma_buf_sync sync = {.flags = flags};
  while (ioctl(dmabuf, DMA_BUF_IOCTL_SYNC, &sync) < 0)
    if (errno != EINTR && errno != EAGAIN) die_errno("DMA_BUF_IOCTL_SYNC");
}

static size_t dmabuf_size(int dmabuf) {
  off_t size = lseek(dmabuf, 0, SEEK_END);
  if (size < 0) die_errno("lseek of the dmabuf");
  return (size_t)size;
}

// FNV-1a, 32 bits: order-sensitive, and a few lines in every language.
static uint32_t fnv1a32(const unsigned char *bytes, size_t length) {
  uint32_t hash = 0x811c9dc5u;
  for (size_t i = 0; i < length; i++) hash = (hash ^ bytes[i]) * 0x01000193u;
  return hash;
}

// The pattern a seed stands for: byte i is the low byte of xorshift32's (i+1)th state.
static void fill_pattern(unsigned char *bytes, size_t length, uint32_t seed) {
  uint32_t state = seed;
  for (size_t i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    bytes[i] = (unsigned char)state;
  }
}

static void check(struct channel *ch, const struct json *root, const struct json *message, struct frame *frame) {
  static const char *const kinds[] = {"dmabuf", "syncfile"};
  expect_kinds(root, frame, kinds, 2);
  int dmabuf = frame->fds[0], fence = frame->fds[1];
  check_is_dmabuf(dmabuf);
  sync_file_status(fence);
  size_t size = dmabuf_size(dmabuf);
  size_t length = (size_t)integer_member(message, "length", 1, size);
  // The writer's fence: the bytes are not there until it signals.
  struct pollfd waiting = {.fd = fence, .events = POLLIN};
  int ready;
  while ((ready = poll(&waiting, 1, -1)) < 0)
    if (errno != EINTR) die_errno("poll of the sync_file");
  int status = sync_file_status(fence);
  if (status != 1) die("the fence signalled with error %d", status);
  const unsigned char *bytes = mmap(NULL, size, PROT_READ, MAP_SHARED, dmabuf, 0);
  if (bytes == MAP_FAILED) die_errno("mmap of the dmabuf");
  cpu_access(dmabuf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ);
  uint32_t hash = fnv1a32(bytes, length);
  char first[2 * 16 + 1] = "";
  for (size_t i = 0; i < length && i < 16; i++) sprintf(first + 2 * i, "%02x", bytes[i]);
  cpu_access(dmabuf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
  munmap((void *)bytes, size);
  close(dmabuf);
  close(fence);
  frame->fd_count = 0;
  char reply[160];
  snprintf(reply, sizeof reply, "{\"op\":\"checked\",\"length\":%zu,\"fnv1a32\":\"%08x\",\"first\":\"%s\"}", length, hash, first);
  send_message(ch, reply, "", NULL, 0);
  printf("%s: checked %zu bytes after the fence signalled: fnv1a32 %08x, first bytes %s\n", self, length, hash, first);
}

// Makes a udmabuf of `length` bytes holding the seed's pattern, and a fence
// on a timeline of its own; sends both and keeps the timeline in *timeline.
static void make(struct channel *ch, const struct json *message, int *timeline) {
  if (*timeline >= 0) die("a second make before the first fence was signalled");
  uint64_t seed = integer_member(message, "seed", 1, UINT32_MAX);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t length = (size_t)integer_member(message, "length", page, 64 * 1024 * 1024);
  if (length % page != 0) die("length %zu is not a multiple of the page size", length);
  int memfd = memfd_create(self, MFD_ALLOW_SEALING | MFD_CLOEXEC);
  if (memfd < 0) die_errno("memfd_create");
  // udmabuf refuses a memfd that could shrink under its pages.
  if (fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) die_errno("F_ADD_SEALS");
  if (ftruncate(memfd, (off_t)length) < 0) die_errno("ftruncate");
  int device = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
  if (device < 0) die_errno("open /dev/udmabuf");
  struct udmabuf_create create = {.memfd = (__u32)memfd, .flags = UDMABUF_FLAGS_CLOEXEC, .offset = 0, .size = length};
  int dmabuf = ioctl(device, UDMABUF_CREATE, &create);
  if (dmabuf < 0) die_errno("UDMABUF_CREATE");
  close(device);
  close(memfd);  // the udmabuf holds its pages
  unsigned char *bytes = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, dmabuf, 0);
  if (bytes == MAP_FAILED) die_errno("mmap of the udmabuf");
  cpu_access(dmabuf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE);
  fill_pattern(bytes, length, (uint32_t)seed);
  cpu_access(dmabuf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
  munmap(bytes, length);
  if ((*timeline = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC)) < 0) die_errno("open /sys/kernel/debug/sync/sw_sync");
  struct sw_sync_create_fence_data fence = {.value = 1};
  snprintf(fence.name, sizeof fence.name, "%s", self);
  if (ioctl(*timeline, SW_SYNC_IOC_CREATE_FENCE, &fence) < 0) die_errno("SW_SYNC_IOC_CREATE_FENCE");
  char reply[128];
  snprintf(reply, sizeof reply, "{\"op\":\"yours\",\"seed\":%llu,\"length\":%zu}", (unsigned long long)seed, length);
  int fds[] = {dmabuf, fence.fence};
  send_message(ch, reply, "\"dmabuf\",\"syncfile\"", fds, 2);
  close(dmabuf);
  close(fence.fence);
  printf("%s: sent a %zu-byte udmabuf with seed %llu's pattern and an active fence\n", self, length, (unsigned long long)seed);
}

static void signal_fence(int *timeline) {
  if (*timeline < 0) die("signal without a fence to signal");
  __u32 step = 1;
  if (ioctl(*timeline, SW_SYNC_IOC_INC, &step) < 0) die_errno("SW_SYNC_IOC_INC");
  close(*timeline);
  *timeline = -1;
  printf("%s: signalled the fence\n", self);
}

// A bad frame on purpose. Returns 1 if this end can no longer write.
static int send_malformed(struct channel *ch, const char *how) {
  int memfd = memfd_create("not-a-dmabuf", MFD_CLOEXEC);
  if (memfd < 0) die_errno("memfd_create");
  size_t length;
  unsigned char *bytes = NULL;
  int write_closed = 0;
  if (strcmp(how, "json") == 0) {
    // Not JSON, with an fd the receiver must close.
    const char *json = "{\"message\":{\"op\":";
    bytes = frame_bytes(FRAME_MAGIC, json, (uint32_t)strlen(json), 1, &length);
    send_bytes(ch, bytes, length, &memfd, 1);
  } else if (strcmp(how, "kind") == 0) {
    // A memfd declared as a dma-buf.
    send_message(ch, "{\"op\":\"malformed\",\"how\":\"kind\"}", "\"dmabuf\"", &memfd, 1);
  } else if (strcmp(how, "count") == 0) {
    // Two kinds for the one fd the header announces and the frame carries.
    send_message(ch, "{\"op\":\"malformed\",\"how\":\"count\"}", "\"fd\",\"fd\"", &memfd, 1);
  } else if (strcmp(how, "magic") == 0) {
    // Another version's magic (not one any receiver knows): a well-formed frame otherwise.
    const char *json = "{\"message\":{\"op\":\"malformed\",\"how\":\"magic\"},\"kinds\":[]}";
    bytes = frame_bytes(FRAME_MAGIC + 1, json, (uint32_t)strlen(json), 0, &length);
    send_bytes(ch, bytes, length, NULL, 0);
  } else if (strcmp(how, "limits") == 0) {
    // A header announcing one byte more than the limit, and nothing after it.
    bytes = frame_bytes(FRAME_MAGIC, "", 0, 0, &length);
    write_u32le(bytes + 4, MAX_JSON_BYTES + 1);
    send_bytes(ch, bytes, length, NULL, 0);
  } else if (strcmp(how, "truncated") == 0) {
    // The start of a 100-byte frame and its fd, then this end stops writing.
    const char *json = "{\"message\":";
    bytes = frame_bytes(FRAME_MAGIC, json, (uint32_t)strlen(json), 1, &length);
    write_u32le(bytes + 4, 100);
    send_bytes(ch, bytes, length, &memfd, 1);
    if (shutdown(ch->fd, SHUT_WR) < 0) die_errno("shutdown");
    write_closed = 1;
  } else {
    die("no malformed frame called \"%s\"", how);
  }
  free(bytes);
  close(memfd);
  printf("%s: sent a malformed frame (%s)\n", self, how);
  return write_closed;
}

int main(void) {
  struct channel ch = {.fd = 3};
  // The end is the parent's non-blocking socket; this peer blocks.
  int flags = fcntl(ch.fd, F_GETFL);
  if (flags < 0) die("fd 3 is not open: run me with the channel's end as fd 3 (%s)", strerror(errno));
  if (fcntl(ch.fd, F_SETFL, flags & ~O_NONBLOCK) < 0) die_errno("fcntl F_SETFL");
  int timeline = -1, write_closed = 0, messages = 0;
  struct frame frame;
  while (next_frame(&ch, &frame)) {
    struct parser parser;
    struct json *root = parse_json(&parser, frame.json, frame.json_length);
    if (root == NULL || root->type != JSON_OBJECT) die("a frame whose JSON does not parse: %s", frame.json);
    struct json *message = member(root, "message");
    const char *op = string_member(message, "op");
    static const char *const none[] = {NULL};
    if (write_closed) die("a message after this end stopped writing: %s", frame.json);
    if (strcmp(op, "hello") == 0) {
      expect_kinds(root, &frame, none, 0);
      send_message(&ch, "{\"op\":\"hello\",\"peer\":\"peer.c\"}", "", NULL, 0);
    } else if (strcmp(op, "check") == 0) {
      check(&ch, root, message, &frame);
    } else if (strcmp(op, "make") == 0) {
      expect_kinds(root, &frame, none, 0);
      make(&ch, message, &timeline);
    } else if (strcmp(op, "signal") == 0) {
      expect_kinds(root, &frame, none, 0);
      signal_fence(&timeline);
    } else if (strcmp(op, "malformed") == 0) {
      expect_kinds(root, &frame, none, 0);
      write_closed = send_malformed(&ch, string_member(message, "how"));
    } else {
      die("a message with op \"%s\", which this peer does not know", op);
    }
    free_json(&parser);
    free(frame.json);
    messages++;
  }
  if (timeline >= 0) close(timeline);
  free(ch.input);
  close(ch.fd);
  printf("%s: end of stream after %d messages\n", self, messages);
  return 0;
}
