// IPC between the window and the workbench, without Electron: the router for invoked channels and the event
// forwarder. Every message is checked here: its sender, its request name and payload (the API contract), its events.
import {
  isEventName,
  isRequestName,
  parseEvent,
  parseRequest,
  type EventName,
  type RequestName,
  type Result,
} from '../app/api/contract.js';
import { Channels, type InvokeChannel } from './channels.js';
import type { SenderInfo } from './security.js';

/** What main needs of app/workbench's Workbench. */
export interface WorkbenchPort {
  /** Validates with the contract and never throws (a failure is { ok: false, error }). */
  handle(name: RequestName, payload: unknown): Promise<Result<unknown>>;
  on(listener: (name: EventName, payload: unknown) => void): () => void;
  close(): Promise<void>;
}

/** The native dialogs (main/index.ts opens them on the app's window). */
export interface Dialogs {
  /** A folder to register as a dataset, or null when cancelled. */
  openFolder(): Promise<string | null>;
  /** Where to write an export, starting from `defaultName`, or null when cancelled. */
  saveExport(defaultName: string): Promise<string | null>;
}

export interface Logger {
  warn(message: string): void;
  error(message: string): void;
}

export interface IpcRouterOptions {
  workbench: WorkbenchPort;
  isTrustedSender: (sender: SenderInfo) => boolean;
  dialogs: Dialogs;
  log?: Logger;
}

/** Handles one invoked message: (channel, who sent it, its arguments) -> the Result sent back. Never throws. */
export type IpcRouter = (
  channel: InvokeChannel,
  sender: SenderInfo,
  args: readonly unknown[],
) => Promise<Result<unknown>>;

export const UNKNOWN_SENDER = 'unknown sender';

const fail = (error: string): Result<never> => ({ ok: false, error });
const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export function createIpcRouter({
  workbench,
  isTrustedSender,
  dialogs,
  log = console,
}: IpcRouterOptions): IpcRouter {
  return async (channel, sender, args) => {
    if (!isTrustedSender(sender)) {
      log.warn(
        `ipc: refused ${channel} from unknown sender ${sender.senderId} (${sender.frameUrl ?? 'no frame'})`,
      );
      return fail(UNKNOWN_SENDER);
    }
    try {
      switch (channel) {
        case Channels.request:
          return await request(workbench, args[0], args[1]);
        case Channels.openFolder:
          return { ok: true, value: await dialogs.openFolder() };
        case Channels.saveExport: {
          const name = args[0];
          if (typeof name !== 'string' || name.length > 255 || /[/\\]/.test(name)) {
            return fail(`${Channels.saveExport}: defaultName must be a file name`);
          }
          return { ok: true, value: await dialogs.saveExport(name) };
        }
        default:
          return fail(`unknown channel ${String(channel)}`);
      }
    } catch (e) {
      // The workbench answers failures as Results; anything thrown is a bug that must not cross the boundary.
      log.error(`ipc: ${channel} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      return fail(message(e));
    }
  };
}

async function request(workbench: WorkbenchPort, name: unknown, payload: unknown): Promise<Result<unknown>> {
  if (typeof name !== 'string' || !isRequestName(name))
    return fail(`unknown request ${JSON.stringify(name)}`);
  let parsed: unknown;
  try {
    parsed = parseRequest(name, payload);
  } catch (e) {
    return fail(message(e));
  }
  return await workbench.handle(name, parsed);
}

/** One event as it travels on Channels.event. */
export interface EventMessage {
  name: EventName;
  payload: unknown;
}

/**
 * The workbench listener that forwards events to the window: only known events whose payload the contract accepts
 * are sent (an invalid one is a workbench bug: logged, dropped). `send` failing (window closing) is logged too.
 */
export function createEventForwarder(
  send: (channel: typeof Channels.event, message: EventMessage) => void,
  log: Logger = console,
): (name: EventName, payload: unknown) => void {
  return (name, payload) => {
    if (typeof name !== 'string' || !isEventName(name)) {
      log.error(`ipc: dropped unknown event ${JSON.stringify(name)}`);
      return;
    }
    let parsed: unknown;
    try {
      parsed = parseEvent(name, payload);
    } catch (e) {
      log.error(`ipc: dropped invalid ${message(e)}`);
      return;
    }
    try {
      send(Channels.event, { name, payload: parsed });
    } catch (e) {
      log.warn(`ipc: could not send event ${name}: ${message(e)}`);
    }
  };
}
