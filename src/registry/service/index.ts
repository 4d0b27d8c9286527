export * from './context.ts';
export * from './devices.ts';
export * from './guest-passes.ts';
export * from './partners.ts';
export * from './residents.ts';
export * from './topology.ts';
