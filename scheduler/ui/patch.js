// A unified diff as a block of lines, each marked as added, removed, a hunk's head, a
// file's head, or context.

import { h } from './dom.js';

export function patchView(patch) {
  const lines = patch.replace(/\n$/, '').split('\n').map((line) => {
    const kind = line.startsWith('@@') ? 'hunk'
      : line.startsWith('+++') || line.startsWith('---') || line.startsWith('diff --git') || line.startsWith('#') ? 'head'
        : line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : 'ctx';
    return h('span', { class: `diff-${kind}` }, `${line}\n`);
  });
  return h('pre', { class: 'patch' }, lines);
}
