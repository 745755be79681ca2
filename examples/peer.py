#!/usr/bin/env python3
"""An FdChannel peer in Python (3.9+, standard library only).

It speaks the frame format of docs/fd-channel-wire-format.md over fd 3, the
end of a socketpair its Node parent put in its stdio (as FdChannel.fromFd(3)
children do), and does what examples/peer.c does; test/guest/peers.test.ts
drives both.

Messages it takes (each {"message": ..., "kinds": [...]}):
  {op:'hello'}: replies {op:'hello', peer:'peer.py'}
  {op:'check', length} + [dmabuf, syncfile]: waits for the sync_file, reads
    the first `length` bytes, replies {op:'checked', length, fnv1a32, first}
  {op:'make', seed, length}: replies {op:'yours', seed, length} + [a udmabuf
    it made and filled with the seed's pattern, a sw_sync fence it holds]
  {op:'signal'}: signals that fence
  {op:'malformed', how}: sends a bad frame on purpose (see send_malformed)
It exits 0 at the end of the stream, 1 with a message on stderr on anything
else.
"""
import fcntl
import json
import mmap
import os
import select
import socket
import struct
import sys

SELF = "peer.py"

# The frame format, version 1.
FRAME_MAGIC = 0x44424348  # "DBCH"
HEADER = struct.Struct("<III")  # magic, JSON length, handle count: little-endian
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_HANDLES = 253  # SCM_MAX_FD


# ioctl numbers, encoded as asm-generic/ioctl.h does (x86, arm, arm64, riscv).
def _ioc(direction, kind, number, size):
    return direction << 30 | size << 16 | ord(kind) << 8 | number


def _iow(kind, number, size):
    return _ioc(1, kind, number, size)


def _iowr(kind, number, size):
    return _ioc(3, kind, number, size)


# <linux/dma-buf.h>
DMA_BUF_SYNC = struct.Struct("=Q")  # struct dma_buf_sync { __u64 flags; }
DMA_BUF_IOCTL_SYNC = _iow("b", 0, DMA_BUF_SYNC.size)
DMA_BUF_SYNC_READ, DMA_BUF_SYNC_WRITE = 1, 2
DMA_BUF_SYNC_START, DMA_BUF_SYNC_END = 0, 4
# <linux/udmabuf.h>: struct udmabuf_create { __u32 memfd, flags; __u64 offset, size; }
UDMABUF_CREATE_ARG = struct.Struct("=IIQQ")
UDMABUF_CREATE = _iow("u", 0x42, UDMABUF_CREATE_ARG.size)
UDMABUF_FLAGS_CLOEXEC = 0x01
# <linux/sync_file.h>: struct sync_file_info { char name[32]; __s32 status;
# __u32 flags, num_fences, pad; __u64 sync_fence_info; }
SYNC_FILE_INFO = struct.Struct("=32siIIIQ")
SYNC_IOC_FILE_INFO = _iowr(">", 4, SYNC_FILE_INFO.size)
# Not uapi: drivers/dma-buf/sw_sync.c's own, behind debugfs.
# struct sw_sync_create_fence_data { __u32 value; char name[32]; __s32 fence; }
SW_SYNC_CREATE_FENCE = struct.Struct("=I32si")
SW_SYNC_IOC_CREATE_FENCE = _iowr("W", 0, SW_SYNC_CREATE_FENCE.size)
SW_SYNC_IOC_INC = _iow("W", 1, 4)


class Unexpected(Exception):
    """Input this peer was not told to expect."""


class Channel:
    def __init__(self, sock):
        self.sock = sock
        self.input = bytearray()
        self.fds = []  # received, in order, not yet taken by a frame

    def _read_some(self):
        data, fds, flags, _ = socket.recv_fds(self.sock, 64 * 1024, MAX_HANDLES, socket.MSG_CMSG_CLOEXEC)
        self.fds.extend(fds)
        if flags & socket.MSG_CTRUNC:
            raise Unexpected("the kernel dropped fds sent to this end (MSG_CTRUNC)")
        self.input += data
        return len(data)

    def next_frame(self):
        """The next (json text, fds); None at an end of stream between frames."""
        while True:
            if len(self.input) >= HEADER.size:
                magic, json_length, handles = HEADER.unpack_from(self.input)
                if magic != FRAME_MAGIC:
                    raise Unexpected(f"a frame with magic {magic:#010x}, not {FRAME_MAGIC:#010x} (DBCH, version 1)")
                if json_length > MAX_JSON_BYTES or handles > MAX_HANDLES:
                    raise Unexpected(f"a frame announcing {json_length} bytes and {handles} handles, beyond the limits")
                # The fds came with the frame's first byte, which is in: all are here.
                if len(self.fds) < handles:
                    raise Unexpected(f"a frame announcing {handles} handles came with {len(self.fds)} fds")
                end = HEADER.size + json_length
                if len(self.input) >= end:
                    text = bytes(self.input[HEADER.size:end])
                    del self.input[:end]
                    fds, self.fds = self.fds[:handles], self.fds[handles:]
                    return text, fds
            if self._read_some() == 0:
                if self.input or self.fds:
                    raise Unexpected(f"the stream ended inside a frame ({len(self.input)} bytes, {len(self.fds)} fds left)")
                return None

    def send_bytes(self, data, fds=()):
        """Writes all of `data`; the fds go with the first byte and never again."""
        sent = socket.send_fds(self.sock, [data], list(fds)) if fds else self.sock.send(data)
        if sent < len(data):
            self.sock.sendall(memoryview(data)[sent:])

    def send(self, message, kinds=(), fds=()):
        self.send_bytes(frame_bytes(json.dumps({"message": message, "kinds": list(kinds)}).encode(), len(fds)), fds)


def frame_bytes(payload, handles, magic=FRAME_MAGIC, announced=None):
    return HEADER.pack(magic, len(payload) if announced is None else announced, handles) + payload


def sync_file_status(fd):
    """1 signalled, 0 active, a negative errno when signalled with an error."""
    info = bytearray(SYNC_FILE_INFO.size)
    try:
        fcntl.ioctl(fd, SYNC_IOC_FILE_INFO, info, True)
    except OSError as error:
        raise Unexpected(f"the fd sent as a syncfile is not one (SYNC_IOC_FILE_INFO: {error.strerror})") from None
    return SYNC_FILE_INFO.unpack(info)[1]


def check_is_dmabuf(fd):
    # Python has no fstatfs: a dma-buf's fdinfo names its exporter, no other file's does.
    with open(f"/proc/self/fdinfo/{fd}") as fdinfo:
        if not any(line.startswith("exp_name:") for line in fdinfo):
            raise Unexpected(f"the fd sent as a dmabuf is not one ({os.readlink(f'/proc/self/fd/{fd}')})")


def cpu_access(dmabuf, flags):
    while True:
        try:
            fcntl.ioctl(dmabuf, DMA_BUF_IOCTL_SYNC, DMA_BUF_SYNC.pack(flags))
            return
        except (InterruptedError, BlockingIOError):
            pass  # a signal came while the kernel waited for fences: ask again


def fnv1a32(data):
    """FNV-1a, 32 bits: order-sensitive, and a few lines in every language."""
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def pattern(seed, length):
    """Byte i is the low byte of xorshift32's (i+1)th state from `seed`."""
    out = bytearray(length)
    state = seed
    for i in range(length):
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        out[i] = state & 0xFF
    return out


def integer(message, key, low, high):
    value = message.get(key) if isinstance(message, dict) else None
    if type(value) is not int or not low <= value <= high:
        raise Unexpected(f'the message\'s "{key}" is not an integer from {low} to {high}')
    return value


def expect_kinds(kinds, fds, expected):
    if kinds != expected or len(fds) != len(expected):
        raise Unexpected(f"kinds {kinds} with {len(fds)} fds, expected {expected}")


class Peer:
    def __init__(self, channel):
        self.channel = channel
        self.timeline = None  # the sw_sync timeline of the fence sent, until signalled
        self.write_closed = False

    def check(self, message, dmabuf, fence):
        check_is_dmabuf(dmabuf)
        sync_file_status(fence)
        size = os.lseek(dmabuf, 0, os.SEEK_END)
        length = integer(message, "length", 1, size)
        # The writer's fence: the bytes are not there until it signals.
        waiting = select.poll()
        waiting.register(fence, select.POLLIN)
        waiting.poll()  # no timeout: returns once the fence has signalled
        status = sync_file_status(fence)
        if status != 1:
            raise Unexpected(f"the fence signalled with error {status}")
        with mmap.mmap(dmabuf, size, mmap.MAP_SHARED, mmap.PROT_READ) as view:
            cpu_access(dmabuf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ)
            data = view[:length]
            cpu_access(dmabuf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ)
        digest, first = f"{fnv1a32(data):08x}", data[:16].hex()
        self.channel.send({"op": "checked", "length": length, "fnv1a32": digest, "first": first})
        print(f"{SELF}: checked {length} bytes after the fence signalled: fnv1a32 {digest}, first bytes {first}")

    def make(self, message):
        if self.timeline is not None:
            raise Unexpected("a second make before the first fence was signalled")
        seed = integer(message, "seed", 1, 0xFFFFFFFF)
        length = integer(message, "length", mmap.PAGESIZE, 64 * 1024 * 1024)
        if length % mmap.PAGESIZE:
            raise Unexpected(f"length {length} is not a multiple of the page size")
        memfd = os.memfd_create(SELF, os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
        try:
            # udmabuf refuses a memfd that could shrink under its pages.
            fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
            os.ftruncate(memfd, length)
            device = os.open("/dev/udmabuf", os.O_RDWR | os.O_CLOEXEC)
            try:
                arg = bytearray(UDMABUF_CREATE_ARG.pack(memfd, UDMABUF_FLAGS_CLOEXEC, 0, length))
                dmabuf = fcntl.ioctl(device, UDMABUF_CREATE, arg, True)  # a mutable arg: the call's result comes back
            finally:
                os.close(device)
        finally:
            os.close(memfd)  # the udmabuf holds its pages
        fence = -1
        try:
            with mmap.mmap(dmabuf, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as view:
                cpu_access(dmabuf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE)
                view[:] = pattern(seed, length)
                cpu_access(dmabuf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE)
            self.timeline = os.open("/sys/kernel/debug/sync/sw_sync", os.O_RDWR | os.O_CLOEXEC)
            arg = bytearray(SW_SYNC_CREATE_FENCE.pack(1, SELF.encode(), -1))
            fcntl.ioctl(self.timeline, SW_SYNC_IOC_CREATE_FENCE, arg, True)
            fence = SW_SYNC_CREATE_FENCE.unpack(arg)[2]
            self.channel.send({"op": "yours", "seed": seed, "length": length}, ["dmabuf", "syncfile"], [dmabuf, fence])
        finally:
            os.close(dmabuf)
            if fence >= 0:
                os.close(fence)
        print(f"{SELF}: sent a {length}-byte udmabuf with seed {seed}'s pattern and an active fence")

    def signal(self):
        if self.timeline is None:
            raise Unexpected("signal without a fence to signal")
        fcntl.ioctl(self.timeline, SW_SYNC_IOC_INC, struct.pack("=I", 1))
        os.close(self.timeline)
        self.timeline = None
        print(f"{SELF}: signalled the fence")

    def send_malformed(self, how):
        """A bad frame on purpose."""
        memfd = os.memfd_create("not-a-dmabuf", os.MFD_CLOEXEC)
        try:
            if how == "json":
                # Not JSON, with an fd the receiver must close.
                self.channel.send_bytes(frame_bytes(b'{"message":{"op":', 1), [memfd])
            elif how == "kind":
                # A memfd declared as a dma-buf.
                self.channel.send({"op": "malformed", "how": how}, ["dmabuf"], [memfd])
            elif how == "count":
                # Two kinds for the one fd the header announces and the frame carries.
                self.channel.send_bytes(frame_bytes(json.dumps({"message": {"op": "malformed", "how": how}, "kinds": ["fd", "fd"]}).encode(), 1), [memfd])
            elif how == "magic":
                # Another version's magic (not one any receiver knows): a well-formed frame otherwise.
                self.channel.send_bytes(frame_bytes(json.dumps({"message": {"op": "malformed", "how": how}, "kinds": []}).encode(), 0, magic=FRAME_MAGIC + 1))
            elif how == "limits":
                # A header announcing one byte more than the limit, and nothing after it.
                self.channel.send_bytes(frame_bytes(b"", 0, announced=MAX_JSON_BYTES + 1))
            elif how == "truncated":
                # The start of a 100-byte frame and its fd, then this end stops writing.
                self.channel.send_bytes(frame_bytes(b'{"message":', 1, announced=100), [memfd])
                self.channel.sock.shutdown(socket.SHUT_WR)
                self.write_closed = True
            else:
                raise Unexpected(f'no malformed frame called "{how}"')
        finally:
            os.close(memfd)
        print(f"{SELF}: sent a malformed frame ({how})")

    def handle(self, text, fds):
        try:
            frame = json.loads(text)
            message, kinds = frame["message"], frame["kinds"]
            op = message["op"]
        except (ValueError, TypeError, KeyError) as error:
            raise Unexpected(f"a frame that is not a message with an op ({error}): {text[:200]!r}") from None
        if self.write_closed:
            raise Unexpected(f"a message after this end stopped writing: {text[:200]!r}")
        if op == "check":
            expect_kinds(kinds, fds, ["dmabuf", "syncfile"])
            self.check(message, *fds)
            return
        expect_kinds(kinds, fds, [])
        if op == "hello":
            self.channel.send({"op": "hello", "peer": SELF})
        elif op == "make":
            self.make(message)
        elif op == "signal":
            self.signal()
        elif op == "malformed":
            self.send_malformed(message.get("how"))
        else:
            raise Unexpected(f'a message with op "{op}", which this peer does not know')


def main():
    try:
        sock = socket.socket(fileno=3)
    except OSError as error:
        raise Unexpected(f"fd 3 is not a socket: run me with the channel's end as fd 3 ({error.strerror})") from None
    # The end is the parent's non-blocking socket; this peer blocks.
    sock.setblocking(True)
    channel, messages = Channel(sock), 0
    peer = Peer(channel)
    try:
        while (frame := channel.next_frame()) is not None:
            text, fds = frame
            try:
                peer.handle(text, fds)
            finally:
                for fd in fds:
                    os.close(fd)
            messages += 1
    finally:
        if peer.timeline is not None:
            os.close(peer.timeline)
        for fd in channel.fds:
            os.close(fd)
        sock.close()
    print(f"{SELF}: end of stream after {messages} messages")


if __name__ == "__main__":
    try:
        main()
    except (Unexpected, OSError) as error:
        print(f"{SELF}: {error}", file=sys.stderr)
        sys.exit(1)
