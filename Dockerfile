# An image that tests dmabuf the way CI does: the same setup script, then
# `npm test`. Not built in this project's CI (no Docker engine there).
# The VM runs under QEMU's TCG, so the container needs no /dev/kvm and no
# privileges; the three kernels npm test boots (base, debug, no-move-notify)
# are built once into the image's cache layer.
FROM node:20-bookworm

WORKDIR /src
COPY . .
ENV DMABUF_CACHE_DIR=/var/cache/dmabuf
RUN bash scripts/setup.sh \
 && node bin/dmabuf.js vm build-kernel --profile base \
 && node bin/dmabuf.js vm build-kernel --profile debug \
 && node bin/dmabuf.js vm build-kernel --profile no-move-notify

CMD ["npm", "test"]
