import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import * as policy from '../../../lib/policy';

// docs/dynamic-policy.md against the code: the rule numbers that comments
// and test titles cite, the profiles of lib/policy/profiles.ts and the
// fields of PolicyRules must all be in it, so neither can drift alone.

const root = join(__dirname, '../../..');
const doc = readFileSync(join(root, 'docs/dynamic-policy.md'), 'utf8');
const scanned = ['lib', 'test', 'bench', 'kernel-module', 'README.md'];
const self = relative(root, __filename);

function sourceFiles(path: string): string[] {
  const entries = readdirSync(join(root, path), { withFileTypes: true });
  return entries.flatMap((entry) => {
    const child = join(path, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : sourceFiles(child);
    return /\.(ts|js|c|h|md)$/.test(entry.name) ? [child] : [];
  });
}

const files = scanned.flatMap((path) => (path.endsWith('.md') ? [path] : sourceFiles(path))).filter((path) => path !== self);

/** "rule 5", "Rules 2 and 3", "rules 3, 5, 7, 10", "rules 5 to 9" (or 5-9, 5–9), "#rule-5": the numbers, ranges expanded. */
function citedRules(text: string): number[] {
  const numbers: number[] = [];
  for (const match of text.matchAll(/\brules?\s+(\d+(?:\s*(?:,|and|or|to|–|-)\s*\d+)*)/gi)) {
    const list = match[1]!;
    for (const part of list.split(/\s*(?:,|and|or)\s*/)) {
      const [from, to] = part.split(/\s*(?:to|–|-)\s*/).map(Number);
      for (let n = from!; n <= (to ?? from!); n += 1) numbers.push(n);
    }
  }
  for (const match of text.matchAll(/#rule-(\d+)/g)) numbers.push(Number(match[1]));
  return numbers;
}

const anchors = new Map([...doc.matchAll(/<a id="rule-(\d+)"><\/a>\n### (.*)/g)].map((match) => [Number(match[1]), match[2]!]));

/** The Markdown table whose header row starts with `start`: its rows as cells (header first, separator dropped). */
function table(start: string): string[][] {
  const lines = doc.split('\n');
  const first = lines.findIndex((line) => line.startsWith(start));
  assert.ok(first >= 0, `docs/dynamic-policy.md has no table starting ${JSON.stringify(start)}`);
  const rows: string[][] = [];
  for (let index = first; index < lines.length && lines[index]!.startsWith('|'); index += 1) {
    if (index === first + 1) continue;
    rows.push(lines[index]!.slice(1, -1).split(/(?<!\\)\|/).map((cell) => cell.trim()));
  }
  return rows;
}

const backticked = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((match) => match[1]!);

describe('policy: docs/dynamic-policy.md against the code', () => {
  it('every rule number cited in lib/, test/, bench/, kernel-module/ and the README has its anchor in the doc', () => {
    const sites = new Map<number, string[]>();
    for (const file of files) {
      readFileSync(join(root, file), 'utf8').split('\n').forEach((line, index) => {
        for (const rule of citedRules(line)) sites.set(rule, [...(sites.get(rule) ?? []), `${file}:${index + 1}`]);
      });
    }
    // The scan must reach the model's own citations, or it proves nothing.
    assert.ok([...sites.values()].flat().some((site) => site.startsWith('lib/policy/core.ts:')), 'no citation found in lib/policy/core.ts');
    assert.ok([...sites.values()].flat().some((site) => site.startsWith('test/host/policy/core.test.ts:')), 'no citation found in test/host/policy/core.test.ts');
    const missing = [...sites].filter(([rule]) => !anchors.has(rule)).map(([rule, where]) => `rule ${rule} (${where.join(', ')})`);
    assert.deepEqual(missing, []);
  });

  it('no file cites the rules or the v10 thread from outside the repository', () => {
    const outside = files.flatMap((file) =>
      readFileSync(join(root, file), 'utf8')
        .split('\n')
        .flatMap((line, index) => (/shared\/(docs|seed)\//.test(line) ? [`${file}:${index + 1}`] : [])),
    );
    assert.deepEqual(outside, []);
  });

  it('each anchor names its own rule, and the rules at a glance have a row for every anchor and none other', () => {
    assert.ok(anchors.size > 0, 'no <a id="rule-N"> anchors');
    for (const [rule, heading] of anchors) assert.match(heading, new RegExp(`^Rule ${rule}: `), `#rule-${rule}`);
    const rows = table('| rule |').slice(1);
    const rowRules = rows.map((cells) => {
      const match = /^\[(\d+)\]\(#rule-(\d+)\)/.exec(cells[0]!);
      assert.ok(match && match[1] === match[2], `row ${JSON.stringify(cells[0])} does not link to its own rule`);
      return Number(match[1]);
    });
    assert.deepEqual([...new Set(rowRules)].sort((a, b) => a - b), [...anchors.keys()].sort((a, b) => a - b));
  });

  it('the rules at a glance have a column for exactly the profiles of lib/policy/profiles.ts, and every row every column', () => {
    const [header, ...rows] = table('| rule |');
    const columns = header!.slice(1, -1).map((cell) => backticked(cell)[0]);
    assert.deepEqual(columns.sort(), Object.values(policy.profiles).map((profile) => profile.label).sort());
    for (const cells of rows) assert.equal(cells.length, header!.length, cells[0]);
  });

  it('the profiles table pairs each profile\'s label with its key in policy.profiles', () => {
    const rows = table('| profile (label) |').slice(1);
    const documented = rows.map((cells) => [backticked(cells[0]!)[0], backticked(cells[1]!)[0]]);
    const actual = Object.entries(policy.profiles).map(([key, profile]) => [profile.label, key]);
    assert.deepEqual(new Set(documented.map((pair) => pair.join(' = '))), new Set(actual.map((pair) => pair.join(' = '))));
    assert.equal(documented.length, actual.length);
  });

  it('the "decided by" column names every field of PolicyRules, and only those', () => {
    const [header, ...rows] = table('| rule |');
    assert.equal(header!.at(-1), 'decided by');
    const named = new Set(rows.flatMap((cells) => backticked(cells.at(-1)!)));
    assert.deepEqual([...named].sort(), Object.keys(policy.profiles.linux61.rules).sort());
  });
});
