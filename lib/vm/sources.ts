import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { codedError } from '../errors';
import { installHint } from './errors';
import { cacheRoot } from './paths';
import { runLogged } from './process';

/**
 * The kernel generations the project tests on, each from Debian's own source
 * package in the Debian suite that carries it. No other site is used: the
 * packages are fetched with apt from deb.debian.org under Debian's keyring.
 */
export const kernelGenerations = {
  '6.1': { sourcePackage: 'linux-source-6.1', suite: 'bookworm', hasMoveNotifyOption: true },
  '6.12': { sourcePackage: 'linux-source-6.12', suite: 'bookworm-backports', hasMoveNotifyOption: true },
  '7.2': { sourcePackage: 'linux-source-7.2', suite: 'unstable', hasMoveNotifyOption: false },
} as const;

export type KernelGeneration = keyof typeof kernelGenerations;

/**
 * 6.12 is what Debian 13 and most long-term-support distributions ship, so
 * it is the kernel a user's host most likely runs; 7.2 is only in unstable.
 */
export const defaultGeneration: KernelGeneration = '6.12';

export const generationNames = Object.keys(kernelGenerations) as KernelGeneration[];

export function isKernelGeneration(value: unknown): value is KernelGeneration {
  return typeof value === 'string' && Object.hasOwn(kernelGenerations, value);
}

const debianArchive = 'http://deb.debian.org/debian';
const debianKeyring = '/usr/share/keyrings/debian-archive-keyring.gpg';

/** Where the source tarball of a generation is: installed in /usr/src, or fetched into the cache. */
export function sourceTarballOf(generation: KernelGeneration, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const name = `${kernelGenerations[generation].sourcePackage}.tar.xz`;
  for (const path of [join('/usr/src', name), join(cacheRoot(env), 'sources', name)]) if (existsSync(path)) return path;
  return undefined;
}

/**
 * Fetches a generation's `linux-source-*` package with apt into the cache and
 * keeps only its tarball. apt runs on a sources list, package lists and an
 * archive cache of the project's own (under the cache directory): nothing on
 * the system changes and no root is needed.
 */
export async function fetchKernelSource(generation: KernelGeneration, onProgress: (line: string) => void = () => {}): Promise<string> {
  const found = sourceTarballOf(generation);
  if (found) return found;
  const { sourcePackage, suite } = kernelGenerations[generation];
  for (const tool of ['apt-get', 'dpkg-deb']) {
    if (!existsSync(`/usr/bin/${tool}`)) throw codedError('ERR_DMABUF_VM_SETUP', `${tool} is not available; the runner fetches Debian's ${sourcePackage} with it.`, 'Run on Debian or Ubuntu, or pass a kernel source of your own: --kernel <tarball or tree>.');
  }
  if (!existsSync(debianKeyring)) throw codedError('ERR_DMABUF_VM_SETUP', `Debian's archive keyring (${debianKeyring}) is missing; it verifies ${sourcePackage}.`, installHint('debian-archive-keyring'));

  const aptRoot = join(cacheRoot(), 'apt', suite);
  const lists = join(aptRoot, 'lists');
  const archives = join(aptRoot, 'archives');
  mkdirSync(join(lists, 'partial'), { recursive: true });
  mkdirSync(join(archives, 'partial'), { recursive: true });
  mkdirSync(join(aptRoot, 'sources.list.d'), { recursive: true });
  mkdirSync(join(aptRoot, 'preferences.d'), { recursive: true });
  const sourcesList = join(aptRoot, 'sources.list');
  writeFileSync(sourcesList, `deb [signed-by=${debianKeyring}] ${debianArchive} ${suite} main\n`);
  const aptOptions = [
    '-o', `Dir::Etc::sourcelist=${sourcesList}`,
    '-o', `Dir::Etc::sourceparts=${join(aptRoot, 'sources.list.d')}`,
    '-o', `Dir::Etc::preferencesparts=${join(aptRoot, 'preferences.d')}`,
    '-o', `Dir::State::Lists=${lists}`,
    '-o', `Dir::Cache=${aptRoot}`,
    '-o', `Dir::Cache::archives=${archives}`,
    '-o', 'APT::Sandbox::User=root',
    '-q',
  ];
  const logPath = join(aptRoot, 'fetch.log');
  const log = createWriteStream(logPath, { flags: 'a' });
  const scratch = mkdtempSync(join(cacheRoot(), 'sources-fetch-'));
  const fail = (what: string): never => {
    throw codedError('ERR_DMABUF_VM_SETUP', `Fetching ${sourcePackage} from Debian's ${suite} failed: ${what} (log: ${logPath}).`, `Check that ${debianArchive} is reachable, or install the package yourself and run again.`, logPath);
  };
  try {
    onProgress(`kernel source: fetching ${sourcePackage} from Debian ${suite} (about 150 MB, once)`);
    if ((await runLogged('apt-get', [...aptOptions, 'update'], scratch, log)) !== 0) fail('apt-get update');
    if ((await runLogged('apt-get', [...aptOptions, 'download', sourcePackage], scratch, log)) !== 0) fail(`apt-get download ${sourcePackage}`);
    const deb = readdirSync(scratch).find((name) => name.startsWith(`${sourcePackage}_`) && name.endsWith('.deb'));
    if (!deb) fail('apt-get left no .deb');
    const member = `./usr/src/${sourcePackage}.tar.xz`;
    const tarball = join(scratch, `${sourcePackage}.tar.xz`);
    const status = await runLogged('sh', ['-c', 'dpkg-deb --fsys-tarfile "$1" | tar -xOf - "$2" > "$3"', 'sh', join(scratch, deb!), member, tarball], scratch, log);
    if (status !== 0) fail(`unpacking ${member} from ${deb}`);
    const destination = join(cacheRoot(), 'sources', `${sourcePackage}.tar.xz`);
    mkdirSync(join(cacheRoot(), 'sources'), { recursive: true });
    renameSync(tarball, destination);
    onProgress(`kernel source: ${destination} (from ${deb})`);
    return destination;
  } finally {
    log.end();
    rmSync(scratch, { recursive: true, force: true });
  }
}
