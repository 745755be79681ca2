/**
 * The fd-passing floor: the addon's primitives alone, for the bench's
 * floor row and its peer (bench/fd-peer.ts).
 */
import { negativeErrno } from '../lib/errors';
import { native } from '../lib/native';

/**
 * One end of the floor row: a native Poller that makes each recvmsg itself
 * (as FdChannel's does), closes the fd that came and calls `onMessage`; no
 * framing, no JSON, no handle objects. `onEnd` runs at the end of stream.
 */
export function primitivesEndpoint(fd: number, onMessage: () => void, onEnd: () => void): { close(): void } {
  const input = Buffer.alloc(64 * 1024);
  const io = new Int32Array(4 + native().Poller.FD_STRIDE);
  const poller = new (native().Poller)(fd, () => {
    const bytes = io[1]!;
    if (bytes === native().Poller.NOT_READ || bytes === negativeErrno('EAGAIN')) return;
    if (bytes <= 0) {
      poller.close();
      onEnd();
      return;
    }
    for (let index = 0; index < io[2]!; index += 1) native().closeFd(io[4 + index * native().Poller.FD_STRIDE]!);
    onMessage();
  });
  io[0] = 0;
  poller.receiveInto(input, io);
  poller.start(native().Poller.READABLE, true);
  return { close: () => poller.close() };
}
