import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Rtnetlink } from '../../../src/io/netlink.js';
import { ERRNO } from '../../../src/io/os-error.js';
import { parseIp } from '../../../src/wire/ip/address.js';
import { AF_INET, AF_UNSPEC, FIREZONE_TABLE } from '../../../src/wire/netlink/constants.js';
import {
  buildAddress,
  buildDumpAddresses,
  buildDumpRoutes,
  buildGetLinkByName,
  buildRoute,
  parseAddress,
  parseLink,
  parseRoute,
} from '../../../src/wire/netlink/rtnetlink.js';
import { Netns } from '../../support/netns.js';
import { rootAvailable } from '../../support/privileges.js';
import { inNetns } from './netns-thread.js';

describe.runIf(rootAvailable('rtnetlink e2e tests'))('rtnetlink socket', () => {
  let ns: Netns;
  let nl: Rtnetlink;

  beforeEach(async () => {
    ns = Netns.create('nl');
    nl = await inNetns(ns.name, () => Rtnetlink.open());
  });

  afterEach(async () => {
    await nl.close();
    ns.destroy();
  });

  it('looks up a link by name, and resolves undefined for a missing one', async () => {
    const lo = await nl.get((seq) => buildGetLinkByName(seq, 'lo'), parseLink, 'look up lo');
    expect(lo).toMatchObject({ ifindex: 1, name: 'lo', mtu: 65536 });
    expect(lo!.flags & 1).toBe(1);
    const none = await nl.get((seq) => buildGetLinkByName(seq, 'nope0'), parseLink, 'look up nope0', [
      ERRNO.ENODEV,
    ]);
    expect(none).toBeUndefined();
  });

  it('adds an address, sees it in a dump, and tolerates only the errnos it is told to', async () => {
    const spec = { ifindex: 1, address: parseIp('192.0.2.1')!, prefixLength: 32 };
    expect(await nl.call((seq) => buildAddress(seq, 'add', spec), 'add 192.0.2.1')).toBe(0);
    await expect(
      nl.call((seq) => buildAddress(seq, 'add', spec), 'add 192.0.2.1 again'),
    ).rejects.toMatchObject({
      code: 'GW_ERR_NETLINK',
      errno: ERRNO.EEXIST,
      message: expect.stringMatching(/^add 192\.0\.2\.1 again failed: EEXIST/),
    });
    expect(await nl.call((seq) => buildAddress(seq, 'add', spec), 'add', [ERRNO.EEXIST])).toBe(ERRNO.EEXIST);
    const addrs = await nl.dump((seq) => buildDumpAddresses(seq, AF_UNSPEC, 1), parseAddress, 'list');
    expect(addrs.map((a) => a.address?.join('.'))).toContain('192.0.2.1');
    expect(ns.ip('-4', 'addr', 'show', 'dev', 'lo')).toContain('192.0.2.1/32');
  });

  it("reports a kernel refusal with the operation, the errno name and the kernel's reason", async () => {
    // Host bits set: the kernel refuses with EINVAL and an extended-ack message.
    const bad = {
      destination: { address: parseIp('100.64.0.1')!, prefixLength: 11 },
      table: FIREZONE_TABLE,
      ifindex: 1,
    };
    await expect(
      nl.call((seq) => buildRoute(seq, 'add', bad), 'add route 100.64.0.1/11'),
    ).rejects.toMatchObject({
      code: 'GW_ERR_NETLINK',
      message:
        'add route 100.64.0.1/11 failed: EINVAL (invalid argument): Invalid prefix for given prefix length',
    });
  });

  it('dumps an empty or missing routing table as an empty list when told ENOENT is harmless', async () => {
    const routes = await nl.dump(
      (seq) => buildDumpRoutes(seq, AF_INET, FIREZONE_TABLE),
      parseRoute,
      'list routes',
      [ERRNO.ENOENT],
    );
    expect(routes.filter((r) => r.table === FIREZONE_TABLE)).toEqual([]);
  });

  it('runs requests issued together one after the other, each with its own outcome', async () => {
    const addr = (last: number) => ({ ifindex: 1, address: parseIp(`192.0.2.${last}`)!, prefixLength: 32 });
    const results = await Promise.allSettled([
      nl.call((seq) => buildAddress(seq, 'add', addr(10)), 'add .10'),
      nl.call((seq) => buildAddress(seq, 'delete', addr(99)), 'delete .99'),
      nl.call((seq) => buildAddress(seq, 'add', addr(11)), 'add .11'),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ errno: ERRNO.EADDRNOTAVAIL });
  });

  it('finishes requests issued before close(), and rejects those issued after it', async () => {
    const issued = nl.get((seq) => buildGetLinkByName(seq, 'lo'), parseLink, 'look up lo first');
    const closing = nl.close();
    expect(nl.close()).toBe(closing);
    await closing;
    await expect(issued).resolves.toMatchObject({ name: 'lo' });
    await expect(
      nl.get((seq) => buildGetLinkByName(seq, 'lo'), parseLink, 'look up lo'),
    ).rejects.toMatchObject({
      code: 'GW_ERR_NETLINK',
      message: 'look up lo: the rtnetlink socket is closed',
    });
  });
});
