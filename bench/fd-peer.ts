/**
 * The far end of the fd-passing benchmark, in its own Node process: echoes
 * every message with a dma-buf of its own (a 4 KiB udmabuf), through
 * FdChannel (argv[2] 'channel', the socket is fd 3), the addon's primitives
 * alone (argv[2] 'floor', argv[3] the frame's bytes, the socket is fd 3) or
 * usocket (argv[2] 'usocket', argv[3] the socket path, argv[4] where usocket
 * is installed, argv[5] the frame's bytes).
 */
import { closeSync } from 'node:fs';
import { FdChannel, FdSocket, udmabuf, type DmaBuf } from '../lib';
import { native } from '../lib/native';
import { primitivesEndpoint } from './primitives';

/**
 * Echoes from the 'message' event, as the Node net row's peer echoes from
 * 'data' and the floor's and usocket's from their read callbacks.
 */
function channelPeer(): void {
  const channel = FdChannel.fromFd(3);
  const buffer = udmabuf.create(4096);
  const end = () => {
    channel.close();
    buffer.close();
  };
  channel.on('message', (received) => {
    (received.handles[0] as DmaBuf).close();
    // A send refused once the bench has closed its end is the session's end.
    channel.send('pong', [buffer]).catch(end);
  });
  // A refused message ends the peer, and with it the row (bench/guest.ts's spawnPeer says so).
  channel.on('error', end);
  channel.on('close', end);
}

/** The FdSocket row's far end: one receive, its fds closed, one send of as many bytes with its own dma-buf. */
async function socketPeer(): Promise<void> {
  const socket = FdSocket.fromFd(3);
  const buffer = udmabuf.create(4096);
  for (;;) {
    const { bytes, fds, ended } = await socket.receive();
    for (const fd of fds) closeSync(fd);
    if (ended) break;
    await socket.send(bytes, [buffer]);
  }
  socket.close();
  buffer.close();
}

interface USocketLike {
  on(event: string, listener: () => void): void;
  read(size: number, fdCount: number): { data: Buffer; fds: number[] } | null;
  write(message: { data: Buffer; fds: number[] }): void;
  connect(path: string, connected: () => void): void;
}

function usocketPeer(path: string, installedAt: string, frameBytes: number): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { USocket } = require(require.resolve('usocket', { paths: [installedAt] })) as { USocket: new () => USocketLike };
  const buffer = udmabuf.create(4096);
  const socket = new USocket();
  socket.on('end', () => process.exit(0));
  socket.on('close', () => process.exit(0));
  // Reading starts once connected, as usocket's README does it: a 'readable'
  // listener added while the connect is under way makes the stream call
  // resume() on a socket with no fd yet, and usocket 1.1.0 aborts on its
  // assertion (uwrap.cc: handle != -1).
  socket.connect(path, () => {
    socket.on('readable', () => {
      for (;;) {
        const message = socket.read(frameBytes, 1);
        if (!message) return;
        for (const fd of message.fds) closeSync(fd);
        socket.write({ data: Buffer.alloc(frameBytes, 1), fds: [buffer.fd] });
      }
    });
  });
}

/** The floor row's far end: the addon's primitives alone, as bench/guest.ts's floorSession uses them. */
function floorPeer(frameBytes: number): void {
  const buffer = udmabuf.create(4096);
  const reply = Buffer.alloc(frameBytes, 1);
  primitivesEndpoint(3, () => native().sendFds(3, reply, 0, reply.length, [buffer.fd]), () => buffer.close());
}

if (process.argv[2] === 'usocket') usocketPeer(process.argv[3]!, process.argv[4]!, Number(process.argv[5]));
else if (process.argv[2] === 'floor') floorPeer(Number(process.argv[3]));
else if (process.argv[2] === 'socket') void socketPeer();
else channelPeer();
