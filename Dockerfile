# An image that tests dmabuf the way CI does: the same setup script, then
# `npm test`. Not built in this project's CI (no Docker engine there).
# The VM runs under QEMU's TCG, so the container needs no /dev/kvm and no
# privileges. The kernels of npm test's matrix (6.1, 6.12, 7.2; MOVE_NOTIFY
# off on 6.1 and 6.12; the 7.2 debug build) are built once into the image's
# cache layer by the runner's own command.
FROM node:20-bookworm

WORKDIR /src
COPY . .
ENV DMABUF_CACHE_DIR=/var/cache/dmabuf
RUN bash scripts/setup.sh \
 && for kernel in 6.1 6.12 7.2; do node bin/dmabuf.js vm build-kernel --kernel "$kernel" || exit 1; done \
 && for kernel in 6.1 6.12; do node bin/dmabuf.js vm build-kernel --kernel "$kernel" --profile no-move-notify || exit 1; done \
 && node bin/dmabuf.js vm build-kernel --kernel 7.2 --profile debug

CMD ["npm", "test"]
