# An image that tests dmabuf the way CI does: the same setup script, then
# `npm test`. Not built in this project's CI (no Docker engine there).
# The VM runs under QEMU's TCG, so the container needs no /dev/kvm and no
# privileges; the kernel is built once into the image's cache layer.
FROM node:20-bookworm

WORKDIR /src
COPY . .
ENV DMABUF_CACHE_DIR=/var/cache/dmabuf
RUN bash scripts/setup.sh && node bin/dmabuf.js vm build-kernel

CMD ["npm", "test"]
