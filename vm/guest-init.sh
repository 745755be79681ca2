#!/bin/sh
# PID 1 of the test VM. The root file system is the host's own, read-only over
# virtio-9p; the runner's results directory arrives as a second, writable 9p
# share. This script mounts what a Linux userspace expects, runs the job the
# runner wrote there, records its exit status and the kernel log, and resets
# the machine (QEMU runs with -no-reboot, so a reset ends it).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
# Scratch goes on /run, never over /tmp: a checkout under /tmp must stay visible.
mount -t tmpfs -o mode=0755 scratch /run
mkdir -p /run/results /run/tmp /run/home
chmod 1777 /run/tmp
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none results /run/results

# The job's output goes to files the host reads (and follows while it runs);
# the serial console keeps only the kernel's own messages.
sh /run/results/job.sh > /run/results/stdout 2> /run/results/stderr < /dev/null
echo $? > /run/results/exit-status.tmp

# On a kernel with kmemleak (the debug profile), look for leaks once the job is
# done. Boot-time reports are kept, not cleared: a leak the kernel makes before
# the job is still a kernel leak, and one to see. An object younger than 5 s is
# never reported, and one in flight between two pointers can look lost for a
# moment, so scan, wait out the minimum age, and scan again, as the kmemleak
# docs advise. The report goes into the kernel log, where the runner's log scan
# sees it ("unreferenced object 0x..."), and into the results as it is.
kmemleak=/sys/kernel/debug/kmemleak
if [ -w $kmemleak ]; then
	echo scan > $kmemleak
	sleep 6
	echo scan > $kmemleak
	cat $kmemleak > /run/results/kmemleak
	while IFS= read -r line; do echo "kmemleak report: $line" > /dev/kmsg; done < /run/results/kmemleak
	echo "dmabuf-vm: kmemleak scanned at the end of the job: $(grep -c '^unreferenced object' /run/results/kmemleak) unreferenced object(s)" > /dev/kmsg
fi
dmesg > /run/results/dmesg 2>/dev/null
mv /run/results/exit-status.tmp /run/results/exit-status
sync
umount /run/results
echo b > /proc/sysrq-trigger
