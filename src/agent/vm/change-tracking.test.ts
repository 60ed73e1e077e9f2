/** The dirty-bitmap chain (change-tracking.ts): what a backup reads, and what it may remove, in each situation. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bitmapSeq, bitmapsToRemove, mergedBitmapName, planTracking, type QemuBitmap, type TrackingState } from './change-tracking.js';

const bm = (name: string, extra: Partial<QemuBitmap> = {}): QemuBitmap => ({ name, recording: false, persistent: true, busy: false, ...extra });
const disk = { index: 0, node: 'vda', file: '/vm/a.qcow2', size: 1 << 30 };
const state = (bitmap: string, over: Partial<TrackingState['disks'][0] & object> = {}): TrackingState => ({ version: 1, pointId: 'P1', disks: [{ node: 'vda', file: '/vm/a.qcow2', size: 1 << 30, bitmap, ...over }] });

test('bitmap names: this item\'s numbered bitmaps only', () => {
  assert.equal(bitmapSeq('web', 'coffre-web-12'), 12);
  assert.equal(bitmapSeq('web', 'coffre-web-1-2'), null, 'another item (web-1)\'s bitmap');
  assert.equal(bitmapSeq('web-1', 'coffre-web-1-2'), 2);
  assert.equal(bitmapSeq('web', mergedBitmapName('web')), null);
  assert.equal(bitmapSeq('web', 'coffre-web-0'), null);
  assert.equal(bitmapSeq('web', 'user-bitmap'), null);
});

test('the first backup, and one after each kind of loss, reads in full and says why', () => {
  const first = planTracking('web', disk, [], null);
  assert.deepEqual([first.mode, first.next, first.disable, first.since], ['full', 'coffre-web-1', null, null]);
  assert.match(first.reason!, /first backup/);
  // QEMU restarted without saving the bitmap: the recorded one is gone.
  const lost = planTracking('web', disk, [], state('coffre-web-4'));
  assert.equal(lost.mode, 'full');
  assert.match(lost.reason!, /QEMU has no dirty bitmap coffre-web-4 since point P1/);
  assert.equal(lost.next, 'coffre-web-1');
  // Loaded after an unclean stop: inconsistent.
  const bad = planTracking('web', disk, [bm('coffre-web-4', { recording: true, inconsistent: true })], state('coffre-web-4'));
  assert.match(bad.reason!, /inconsistent/);
  assert.equal(bad.disable, null, 'an inconsistent bitmap cannot be disabled');
  assert.match(planTracking('web', disk, [bm('coffre-web-4', { recording: true })], state('coffre-web-4', { file: '/vm/b.qcow2' })).reason!, /replaced/);
  assert.match(planTracking('web', disk, [bm('coffre-web-4', { recording: true })], state('coffre-web-4', { size: 1 << 29 })).reason!, /size changed/);
  assert.match(planTracking('web', disk, [bm('coffre-web-4'), bm('coffre-web-6', { recording: true })], state('coffre-web-4')).reason!, /coffre-web-5 is missing/);
  assert.match(planTracking('web', disk, [bm('coffre-web-4')], state('coffre-web-4')).reason!, /stopped recording/);
});

test('an incremental reads the union of every bitmap since the last committed point, failed backups included', () => {
  const normal = planTracking('web', disk, [bm('coffre-web-4', { recording: true }), bm('other')], state('coffre-web-4'));
  assert.deepEqual(normal, { mode: 'incremental', chain: ['coffre-web-4'], since: 'P1', next: 'coffre-web-5', disable: 'coffre-web-4' });
  // Two backups failed after P1: each disabled one bitmap and added the next.
  const after = planTracking('web', disk, [bm('coffre-web-4'), bm('coffre-web-5'), bm('coffre-web-6', { recording: true }), bm('coffre-web-3')], state('coffre-web-4'));
  assert.deepEqual(after.chain, ['coffre-web-4', 'coffre-web-5', 'coffre-web-6']);
  assert.deepEqual([after.next, after.disable], ['coffre-web-7', 'coffre-web-6']);
  // Once committed, everything but the new bitmap goes (the stale 3 too, and the merged union).
  assert.deepEqual(bitmapsToRemove('web', [bm('coffre-web-3'), bm('coffre-web-4'), bm('coffre-web-5'), bm('coffre-web-6'), bm('coffre-web-7', { recording: true }), bm(mergedBitmapName('web')), bm('other')], 'coffre-web-7'),
    ['coffre-web-3', 'coffre-web-4', 'coffre-web-5', 'coffre-web-6', mergedBitmapName('web')]);
});
