/**
 * The service's Prometheus metrics (text exposition format 0.0.4 through prom-client). One registry per
 * process; every capability declares its own instruments here with {@link counter}, {@link gauge} or
 * {@link histogram}, so a name is declared once however often the app is built (tests build many apps in
 * one process). Labels carry internal ids and codes only — never names, phones, plates or tokens.
 */
import client from 'prom-client';

export const registry = new client.Registry();

function existing<T>(name: string): T | undefined {
  return registry.getSingleMetric(name) as T | undefined;
}

export function counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []) {
  return (
    existing<client.Counter<L>>(name) ??
    new client.Counter<L>({ name, help, labelNames: [...labelNames], registers: [registry] })
  );
}

export function gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = []) {
  return (
    existing<client.Gauge<L>>(name) ??
    new client.Gauge<L>({ name, help, labelNames: [...labelNames], registers: [registry] })
  );
}

export function histogram<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[] = [],
  buckets: number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
) {
  return (
    existing<client.Histogram<L>>(name) ??
    new client.Histogram<L>({ name, help, labelNames: [...labelNames], buckets, registers: [registry] })
  );
}
