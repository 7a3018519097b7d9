import type { JobSpecInput } from '../../core/jobspec.ts';
import type { ControlPress, ImagineCommand } from '../surface.ts';

/** The job's origin from the interaction that asks for it: who, where, and the adapter's reference. */
export function originOf(action: ImagineCommand | ControlPress): JobSpecInput['origin'] {
  return {
    surface: action.surface,
    user: action.user,
    ...(action.userName === undefined ? {} : { userName: action.userName }),
    channel: action.channel,
    ...(action.workspace === undefined ? {} : { workspace: action.workspace }),
    ...(action.ageRestricted === undefined ? {} : { ageRestricted: action.ageRestricted }),
    ...(action.thread === undefined ? {} : { thread: action.thread }),
    interactionId: action.interactionId,
    messageRef: { ...action.messageRef },
  };
}
