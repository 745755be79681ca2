import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { codedError } from '../errors';
import { installHint } from './errors';
import { cacheRoot } from './paths';
import { runLogged } from './process';

/**
 * The kernel generations the project tests on, each from Debian's own source
 * package in the Debian suite that carries it. No other site is used: the
 * packages are fetched with apt from deb.debian.org under Debian's keyring.
 * `updateSuites` are read too, and apt takes the highest version: bookworm's
 * own 6.1 is its last point release (6.1.176 when measured), while a Debian
 * 12 host with security updates runs bookworm-security's (6.1.192).
 */
export const kernelGenerations = {
  '6.1': { sourcePackage: 'linux-source-6.1', suite: 'bookworm', updateSuites: ['bookworm-security'], hasMoveNotifyOption: true },
  '6.12': { sourcePackage: 'linux-source-6.12', suite: 'bookworm-backports', updateSuites: [], hasMoveNotifyOption: true },
  '7.2': { sourcePackage: 'linux-source-7.2', suite: 'unstable', updateSuites: [], hasMoveNotifyOption: false },
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
const debianSecurityArchive = 'http://deb.debian.org/debian-security';
const archiveOf = (suite: string) => (suite.endsWith('-security') ? debianSecurityArchive : debianArchive);
const debianKeyring = '/usr/share/keyrings/debian-archive-keyring.gpg';

/** The two places a generation's tarball can be: installed by the system's apt, or fetched into the cache. */
function tarballPlaces(generation: KernelGeneration, env: NodeJS.ProcessEnv = process.env): { installed: string; cached: string } {
  const name = `${kernelGenerations[generation].sourcePackage}.tar.xz`;
  return { installed: join('/usr/src', name), cached: join(cacheRoot(env), 'sources', name) };
}

/** Where the source tarball of a generation is: installed in /usr/src, or fetched into the cache. */
export function sourceTarballOf(generation: KernelGeneration, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const { installed, cached } = tarballPlaces(generation, env);
  return [installed, cached].find((path) => existsSync(path));
}

/** The package version a fetched tarball came from, kept beside it. */
const versionFileOf = (tarball: string) => tarball.replace(/\.tar\.xz$/, '.version');

/**
 * Fetches a generation's `linux-source-*` package with apt into the cache and
 * keeps only its tarball (and the package version it came from). apt runs on
 * a sources list, package lists and an archive cache of the project's own
 * (under the cache directory): nothing on the system changes and no root is
 * needed. A tarball in the cache is used as it is (every build from it stays
 * valid), unless it has no recorded version (fetched before versions were
 * recorded, from bookworm alone) or `update` asks Debian whether its suites
 * now carry another version (a security update); when the archive cannot be
 * reached, the cached one is kept. One installed in /usr/src belongs to the
 * system's apt and is used as it is.
 */
export async function fetchKernelSource(generation: KernelGeneration, onProgress: (line: string) => void = () => {}, options: { update?: boolean } = {}): Promise<string> {
  const { sourcePackage, suite, updateSuites } = kernelGenerations[generation];
  const { installed, cached: destination } = tarballPlaces(generation);
  if (existsSync(installed)) return installed;
  const cached = existsSync(destination) ? destination : undefined;
  if (cached && existsSync(versionFileOf(cached)) && !options.update) return cached;
  for (const tool of ['apt-get', 'apt-cache', 'dpkg-deb']) {
    if (existsSync(`/usr/bin/${tool}`)) continue;
    if (cached) return cached;
    throw codedError('ERR_DMABUF_VM_SETUP', `${tool} is not available; the runner fetches Debian's ${sourcePackage} with it.`, 'Run on Debian or Ubuntu, or pass a kernel source of your own: --kernel <tarball or tree>.');
  }
  if (!existsSync(debianKeyring)) throw codedError('ERR_DMABUF_VM_SETUP', `Debian's archive keyring (${debianKeyring}) is missing; it verifies ${sourcePackage}.`, installHint('debian-archive-keyring'));

  const suites = [suite, ...updateSuites];
  const aptRoot = join(cacheRoot(), 'apt', suite);
  const lists = join(aptRoot, 'lists');
  const archives = join(aptRoot, 'archives');
  mkdirSync(join(lists, 'partial'), { recursive: true });
  mkdirSync(join(archives, 'partial'), { recursive: true });
  mkdirSync(join(aptRoot, 'sources.list.d'), { recursive: true });
  mkdirSync(join(aptRoot, 'preferences.d'), { recursive: true });
  const sourcesList = join(aptRoot, 'sources.list');
  writeFileSync(sourcesList, suites.map((name) => `deb [signed-by=${debianKeyring}] ${archiveOf(name)} ${name} main\n`).join(''));
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
  const where = suites.join(' + ');
  const fail = (what: string): never => {
    throw codedError('ERR_DMABUF_VM_SETUP', `Fetching ${sourcePackage} from Debian's ${where} failed: ${what} (log: ${logPath}).`, `Check that ${debianArchive} is reachable, or install the package yourself and run again.`, logPath);
  };
  try {
    if ((await runLogged('apt-get', [...aptOptions, 'update'], scratch, log)) !== 0) {
      if (cached) {
        onProgress(`kernel source: could not reach Debian's ${where} to look for a newer ${sourcePackage}; using ${cached}`);
        return cached;
      }
      fail('apt-get update');
    }
    const shown = spawnSync('apt-cache', [...aptOptions, 'show', '--no-all-versions', sourcePackage], { encoding: 'utf8' });
    const candidate = /^Version: (\S+)$/m.exec(shown.stdout ?? '')?.[1];
    if (!candidate) fail(`no ${sourcePackage} in ${where}`);
    if (cached && existsSync(versionFileOf(cached)) && readFileSync(versionFileOf(cached), 'utf8').trim() === candidate) return cached;

    onProgress(`kernel source: fetching ${sourcePackage} ${candidate} from Debian ${where} (about 150 MB${cached ? ', replacing the cached one' : ', once'})`);
    if ((await runLogged('apt-get', [...aptOptions, 'download', `${sourcePackage}=${candidate!}`], scratch, log)) !== 0) fail(`apt-get download ${sourcePackage}=${candidate!}`);
    const deb = readdirSync(scratch).find((name) => name.startsWith(`${sourcePackage}_`) && name.endsWith('.deb'));
    if (!deb) fail('apt-get left no .deb');
    const member = `./usr/src/${sourcePackage}.tar.xz`;
    const tarball = join(scratch, `${sourcePackage}.tar.xz`);
    const status = await runLogged('sh', ['-c', 'dpkg-deb --fsys-tarfile "$1" | tar -xOf - "$2" > "$3"', 'sh', join(scratch, deb!), member, tarball], scratch, log);
    if (status !== 0) fail(`unpacking ${member} from ${deb}`);
    mkdirSync(join(cacheRoot(), 'sources'), { recursive: true });
    renameSync(tarball, destination);
    writeFileSync(versionFileOf(destination), `${candidate!}\n`);
    onProgress(`kernel source: ${destination} (from ${deb})`);
    return destination;
  } finally {
    log.end();
    rmSync(scratch, { recursive: true, force: true });
  }
}
