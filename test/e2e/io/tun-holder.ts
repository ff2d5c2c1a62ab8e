/**
 * Child process for tun-lifetime.test.ts: opens and configures a TUN device in the namespace it
 * was started in, starts reading, prints "ready" and then waits to be killed.
 */
import { openTun } from '../../../src/io/tun.js';

const name = process.argv[2];
if (!name) throw new Error('usage: tun-holder.ts <interface name>');
const tun = await openTun({ name });
await tun.configure({ ipv4: '100.66.0.1', ipv6: 'fd00:2021:1111::1', routes: ['100.64.0.0/11'] });
tun.start(() => undefined);
process.stdout.write(`ready ${tun.ifindex}\n`);
