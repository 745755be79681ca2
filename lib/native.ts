import bindings from 'bindings';

/** The addon's exports. Each native call returns its value or a negative errno. */
export interface NativeBinding {
  kernelRelease(): string | number;
  probeMemfdCreate(): number;
}

let loaded: NativeBinding | undefined;

/** Loads the addon on first use, so that tools which never touch it (the VM runner) work without a build. */
export function native(): NativeBinding {
  loaded ??= bindings('dmabuf_native') as NativeBinding;
  return loaded;
}
