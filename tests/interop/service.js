// A service that is not mutexctl: the seed's P/V on the shared `mutexes` collection, written with
// the official Node.js driver, as README.md ("Sharing mutexes with other services") tells foreign
// services to (--style readme), or in the naive forms real services use (the other styles).
//
//   node service.js --uri URI --mutex NAME --node ID --log FILE --style STYLE
//                   --timeout MS --hold MS --seconds S [--pause MS]
//                                                          loop P -> section -> V (-> pause) for S seconds
//   node service.js ... --release-only                     one naive V by mutexId only, then exit
//
// Every critical section appends "enter WHO NS" and "exit WHO NS" (CLOCK_MONOTONIC nanoseconds,
// O_APPEND) to the log. Prints {"turns": N, "tries": M} at the end.
'use strict';
const fs = require('fs');
const { MongoClient } = require('mongodb');

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  if (at === -1) return fallback;
  return process.argv[at + 1];
}
const flag = (name) => process.argv.includes(`--${name}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- README.md's P and V, as written there ------------------------------------------------------
const END = { $add: [{ $dateFromString: { dateString: '$takenAt', onError: null } }, '$timeout'] };
const ENDED = { $cond: [{ $and: [{ $eq: [{ $type: '$takenAt' }, 'string'] }, { $isNumber: '$timeout' }] },
  { $let: { vars: { end: END }, in: { $and: [{ $ne: ['$$end', null] }, { $lte: ['$$end', '$$NOW'] }] } } },
  false] };

async function P(mutexes, mutexId, nodeId, timeoutMs) {
  try {
    const doc = await mutexes.findOneAndUpdate(
      { mutexId, $or: [{ taken: { $ne: true } }, { $expr: ENDED }] },
      [{ $set: { mutexId, taken: true, takenBy: nodeId, timeout: timeoutMs,
                 takenAt: { $dateToString: { date: '$$NOW', format: '%Y-%m-%dT%H:%M:%S.%LZ' } } } }],
      { upsert: true, returnDocument: 'after', writeConcern: { w: 'majority' } });
    return doc.takenAt;                       // identifies this lease, for V
  } catch (e) {
    if (e.code === 11000) return null;        // held: the upsert met the unique index on mutexId
    throw e;
  }
}

async function V(mutexes, mutexId, nodeId, takenAt) {
  const done = await mutexes.updateOne({ mutexId, taken: true, takenBy: nodeId, takenAt },
                                       { $set: { taken: false } }, { writeConcern: { w: 'majority' } });
  return done.modifiedCount === 1;            // false: the lease had ended and passed on
}
// --------------------------------------------------------------------------------------------------

// Naive services: an operator upsert (the server makes an ObjectId _id), takenAt and timeout in
// their own forms, expiry judged on their own clock in their own form, V by mutexId only.
// (The $type in each expiry test is what MongoDB's type bracketing does anyway; the test server
// compares across types, so it is spelled out.)
const NAIVE = {
  'naive-date': { takenAt: () => new Date(), timeout: (ms) => ms,
                  expired: (ms) => ({ $type: 'date', $lt: new Date(Date.now() - ms) }) },
  'naive-epoch': { takenAt: () => Date.now(), timeout: (ms) => ms,
                   expired: (ms) => ({ $type: 'number', $lt: Date.now() - ms }) },
  'naive-epoch-string': { takenAt: () => String(Date.now()), timeout: (ms) => String(ms),
                          expired: (ms) => ({ $regex: /^\d{13}$/, $lt: String(Date.now() - ms) }) },
  'naive-double-timeout': { takenAt: () => new Date(), timeout: (ms) => ms + 0.5,
                            expired: (ms) => ({ $type: 'date', $lt: new Date(Date.now() - ms) }) },
};

function isoWithOffset(date, minutes) {  // e.g. 2026-11-27T13:03:06.908123+01:00
  const shifted = new Date(date.getTime() + minutes * 60000).toISOString().slice(0, -1);
  const sign = minutes >= 0 ? '+' : '-';
  const hh = String(Math.floor(Math.abs(minutes) / 60)).padStart(2, '0');
  const mm = String(Math.abs(minutes) % 60).padStart(2, '0');
  return `${shifted}123${sign}${hh}:${mm}`;
}

async function naiveP(mutexes, style, mutexId, nodeId, timeoutMs) {
  let expired;
  let takenAt;
  if (style === 'naive-iso-offset') {  // ISO with an offset and microseconds; expiry judged as README's P
    takenAt = isoWithOffset(new Date(), 60);
    expired = { $expr: ENDED };
  } else {
    const form = NAIVE[style];
    takenAt = form.takenAt();
    expired = { takenAt: form.expired(timeoutMs) };
  }
  const timeout = style === 'naive-iso-offset' ? timeoutMs : NAIVE[style].timeout(timeoutMs);
  try {
    await mutexes.updateOne({ mutexId, $or: [{ taken: false }, expired] },
                            { $set: { taken: true, takenAt, takenBy: nodeId, timeout } },
                            { upsert: true, writeConcern: { w: 'majority' } });
    // an update that matched nothing would have inserted: reaching here means we hold it
    return takenAt;
  } catch (e) {
    if (e.code === 11000) return null;
    throw e;
  }
}

async function naiveV(mutexes, mutexId) {  // the seed's V(mutexId): by name alone
  await mutexes.updateOne({ mutexId }, { $set: { taken: false } }, { writeConcern: { w: 'majority' } });
}

function logLine(log, what, who) {
  fs.appendFileSync(log, `${what} ${who} ${process.hrtime.bigint()}\n`);  // 'a': O_APPEND
}

async function main() {
  const uri = option('uri');
  const mutexId = option('mutex');
  const nodeId = option('node');
  const log = option('log');
  const style = option('style', 'readme');
  const timeoutMs = Number(option('timeout', '1000'));
  const holdMs = Number(option('hold', '100'));
  const seconds = Number(option('seconds', '5'));
  const pauseMs = Number(option('pause', '15'));  // after V, before the next P
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10000 });
  await client.connect();
  const mutexes = client.db().collection('mutexes');
  if (flag('release-only')) {
    await naiveV(mutexes, mutexId);
    await client.close();
    return;
  }
  const stopAt = Date.now() + seconds * 1000;
  let turns = 0;
  let tries = 0;
  while (Date.now() < stopAt) {
    tries += 1;
    const lease = style === 'readme' ? await P(mutexes, mutexId, nodeId, timeoutMs)
      : await naiveP(mutexes, style, mutexId, nodeId, timeoutMs);
    if (lease === null) {
      await sleep(5 + Math.random() * 20);
      continue;
    }
    logLine(log, 'enter', nodeId);
    await sleep(holdMs);
    logLine(log, 'exit', nodeId);
    if (style === 'readme') await V(mutexes, mutexId, nodeId, lease);
    else await naiveV(mutexes, mutexId);
    turns += 1;
    await sleep(pauseMs * (0.5 + Math.random()));  // let others in
  }
  await client.close();
  process.stdout.write(`${JSON.stringify({ turns, tries })}\n`);
}

main().catch((e) => { process.stderr.write(`${e.stack || e}\n`); process.exit(1); });
