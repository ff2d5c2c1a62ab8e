import { createSocket } from 'node:dgram';
import { formatIp, parseIp } from '../wire/ip/address.js';

/**
 * The source address the kernel would pick to reach `ip`: a UDP socket is connected (no packet
 * is sent) and asked for its local address. The tunnel socket listens on the wildcard address,
 * so this is how the gateway knows its host candidate towards a relay (`spec/snownet.md` §2.3;
 * the reference reads the destination of the relay's answer with IP_PKTINFO instead).
 * Resolves to undefined when there is no route.
 */
export function sourceAddressTowards(ip: Uint8Array): Promise<Uint8Array | undefined> {
  return new Promise((resolve) => {
    const sock = createSocket(ip.length === 4 ? 'udp4' : 'udp6');
    const done = (value: Uint8Array | undefined) => {
      sock.close();
      resolve(value);
    };
    sock.once('error', () => done(undefined));
    // Port 9 (discard): any port works, nothing is sent by connect().
    sock.connect(9, formatIp(ip), () => {
      try {
        done(parseIp(sock.address().address));
      } catch {
        done(undefined);
      }
    });
  });
}
