'use strict';
// Two processes share one dma-buf: the writer passes it to a reader over an
// FdChannel, with a fence that says "still being written"; the reader waits
// for the fence, then reads. Needs udmabuf and sw_sync; on a host without
// them: npx dmabuf vm run -- node examples/two-processes.js
const { spawn } = require('node:child_process');
const { FdChannel, SwSyncTimeline, udmabuf } = require('dmabuf');

async function reader() {
  const channel = FdChannel.fromFd(3); // the end the writer put in our stdio
  const { handles: [frame] } = await channel.receive();
  await frame.waitIdle({ mode: 'read' }); // until the writer's fence signals
  const text = frame.withCpuAccess('read', (bytes) => bytes.toString('utf8', 0, 13));
  console.log(`reader ${process.pid} saw: ${text}`);
  frame.close();
  channel.close();
}

async function writer() {
  const [mine, theirs] = FdChannel.pair();
  const child = spawn(process.execPath, [__filename, 'reader'], { stdio: ['inherit', 'inherit', 'inherit', theirs.fd] });
  theirs.close();
  const frame = udmabuf.create(4096, { name: 'frame' });
  const timeline = SwSyncTimeline.open();
  const writing = timeline.createFence(1);
  try {
    frame.importSyncFile(writing, 'write'); // readers must wait for this fence
    await mine.send({ frame: 1 }, [frame]);
    frame.map().write('hello, reader'); // the "device" writes...
    timeline.advance(1); // ...and signals
    const status = await new Promise((resolve) => child.on('exit', resolve));
    console.log(`writer ${process.pid}: reader exited with ${status}`);
    process.exitCode = status;
  } finally {
    for (const handle of [writing, timeline, frame, mine]) handle.close();
  }
}

(process.argv[2] === 'reader' ? reader() : writer()).catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
