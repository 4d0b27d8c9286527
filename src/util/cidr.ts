import { BlockList, isIP } from 'node:net';

/** A set of CIDR ranges answering "is this address inside?" for IPv4, IPv6 and IPv4-mapped IPv6. */
export class CidrSet {
  readonly #list = new BlockList();
  readonly cidrs: readonly string[];
  constructor(cidrs: readonly string[]) {
    this.cidrs = cidrs;
    for (const cidr of cidrs) {
      const [addr, bits] = cidr.split('/');
      const family = isIP(addr ?? '');
      if (!addr || family === 0) throw new Error(`invalid CIDR: ${cidr}`);
      const prefix = bits === undefined ? (family === 4 ? 32 : 128) : Number(bits);
      this.#list.addSubnet(addr, prefix, family === 4 ? 'ipv4' : 'ipv6');
    }
  }

  has(address: string | undefined): boolean {
    if (!address) return false;
    const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
    const family = isIP(v4);
    if (family === 0) return false;
    return this.#list.check(v4, family === 4 ? 'ipv4' : 'ipv6');
  }
}
