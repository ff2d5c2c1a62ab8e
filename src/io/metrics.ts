import { Counter, Gauge, Registry } from 'prom-client';

/** What the gateway exposes; read on every scrape, so the hot path only bumps plain counters. */
export interface MetricsSource {
  dropCounters(): Record<string, number>;
  traffic(): Record<string, number>;
  clients(): number;
  /** The DNS server's and resolver's counters (queries, SERVFAIL, FORMERR, lookups, ...). */
  dns?(): Record<string, number>;
  /** Whether a nameserver is selected (1) or none answers (0). */
  nameserverAvailable?(): boolean;
}

/**
 * Prometheus metrics on the health-check server (`GET /metrics`). Values are pulled from the
 * router's own counters when scraped, so nothing is done per packet for metrics.
 */
export function createMetricsRegistry(source: MetricsSource): Registry {
  const registry = new Registry();
  registry.registerMetric(
    new Counter({
      name: 'firezone_gateway_packets_dropped_total',
      help: 'Packets and datagrams dropped, by reason',
      labelNames: ['reason'],
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(source.dropCounters())) if (n > 0) this.inc({ reason }, n);
      },
      registers: [],
    }),
  );
  registry.registerMetric(
    new Counter({
      name: 'firezone_gateway_traffic_total',
      help: 'Packets and bytes through the gateway, by kind (fromClientsPackets, toTunPackets, ...)',
      labelNames: ['kind'],
      collect() {
        this.reset();
        for (const [kind, n] of Object.entries(source.traffic())) if (n > 0) this.inc({ kind }, n);
      },
      registers: [],
    }),
  );
  registry.registerMetric(
    new Gauge({
      name: 'firezone_gateway_clients',
      help: 'Clients currently known to the gateway',
      collect() {
        this.set(source.clients());
      },
      registers: [],
    }),
  );
  const dns = source.dns?.bind(source);
  if (dns) {
    registry.registerMetric(
      new Counter({
        name: 'firezone_gateway_dns_total',
        help: 'In-tunnel DNS server and resolver events, by kind (queries, answered, servfailNoNameserver, lookups, ...)',
        labelNames: ['kind'],
        collect() {
          this.reset();
          for (const [kind, n] of Object.entries(dns())) if (n > 0) this.inc({ kind }, n);
        },
        registers: [],
      }),
    );
  }
  const available = source.nameserverAvailable?.bind(source);
  if (available) {
    registry.registerMetric(
      new Gauge({
        name: 'firezone_gateway_nameserver_available',
        help: '1 while a nameserver is selected, 0 while none answers',
        collect() {
          this.set(available() ? 1 : 0);
        },
        registers: [],
      }),
    );
  }
  return registry;
}
