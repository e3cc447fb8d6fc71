// Pure: which control actions a run's status allows ('continue' for a paused run, 'resume' for a stopped one).

export type RunAction = 'pause' | 'continue' | 'stop' | 'resume';

export function actionsFor(status: string): RunAction[] {
  switch (status) {
    case 'running':
      return ['pause', 'stop'];
    case 'paused':
      return ['continue', 'stop'];
    case 'stopped':
    case 'failed':
    case 'idle':
      return ['resume'];
    default:
      return [];
  }
}

export const ACTION_LABEL: Record<RunAction, string> = {
  pause: 'Pause',
  continue: 'Continue',
  stop: 'Stop',
  resume: 'Resume',
};

/** 0..1 progress, 0 when the total is unknown. */
export function progress(step: number, total: number): number {
  return total > 0 ? Math.min(1, Math.max(0, step / total)) : 0;
}
