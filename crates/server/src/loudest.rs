//! Which speakers each listener receives: the loudest few, chosen with hysteresis (sans-IO).
//!
//! Every speaker's uplink carries RFC 6464 audio levels; the forwarder keeps a smoothed
//! loudness per speaker ([`crate::sfu::Loudness`]) and the room asks a [`Selection`] every
//! [`EVALUATE_EVERY`] who is in. The selection has two tiers:
//!
//! - the *forwarded* speakers, at most `n` (the server's `max_forwarded_speakers`): every
//!   listener receives exactly these;
//! - one *reserve*, the best of the rest: a forwarded speaker does not receive themself, so
//!   they receive the other forwarded speakers plus the reserve, `n` voices like everyone else.
//!
//! A place that is free goes to the loudest candidate at once, even a silent one (a silent
//! speaker costs nothing: nothing is forwarded for them, and if they start talking they are
//! heard without a switch). A candidate outside only takes the place of the quietest one in
//! when it is louder by [`HYSTERESIS_DB`] and that one has held its place for [`MIN_HOLD`], so
//! two voices of about the same loudness do not make the slots flap.
//!
//! No clock, no IO: times come in as arguments, so the tests below drive it deterministically.

use std::time::{Duration, Instant};

use confab_proto::ParticipantId;

/// How often the room re-evaluates the selection.
pub(crate) const EVALUATE_EVERY: Duration = Duration::from_millis(100);

/// How much louder (dB) a candidate must be than the quietest forwarded speaker to replace it.
pub(crate) const HYSTERESIS_DB: f32 = 6.0;

/// How long a speaker keeps a place before a louder candidate may take it.
pub(crate) const MIN_HOLD: Duration = Duration::from_millis(500);

/// The score of a speaker who sent nothing for a while, or only silence.
pub(crate) const SILENT_DB: f32 = -127.0;

/// A speaker the room may forward, with how loud they are now (dBov, [`SILENT_DB`] at most
/// quiet; a speaker whose packets carry no level is scored by the room, see
/// [`crate::sfu::UNKNOWN_LEVEL_DB`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Candidate {
    pub(crate) who: ParticipantId,
    pub(crate) db: f32,
}

/// One tier: at most `capacity` speakers, stable under small changes of loudness.
#[derive(Debug, Default)]
struct Tier {
    capacity: usize,
    /// Who is in, and since when.
    members: Vec<(ParticipantId, Instant)>,
}

impl Tier {
    fn contains(&self, who: ParticipantId) -> bool {
        self.members.iter().any(|(m, _)| *m == who)
    }

    /// Updates the members from `candidates` (in the room's speaking order, which breaks
    /// ties), skipping anyone in `exclude`. Returns whether the members changed.
    fn update(
        &mut self,
        candidates: &[Candidate],
        exclude: &[ParticipantId],
        now: Instant,
    ) -> bool {
        let before: Vec<ParticipantId> = self.members.iter().map(|(m, _)| *m).collect();
        let eligible = |c: &&Candidate| !exclude.contains(&c.who);
        let db_of = |who: ParticipantId| {
            candidates
                .iter()
                .find(|c| c.who == who)
                .map_or(SILENT_DB, |c| c.db)
        };
        // Whoever is no longer a candidate (left the stage, muted) leaves at once.
        self.members
            .retain(|(m, _)| candidates.iter().filter(eligible).any(|c| c.who == *m));
        // Free places go to the loudest outsiders, whoever they are.
        while self.members.len() < self.capacity {
            let Some(best) = loudest_outside(candidates, &self.members, exclude) else {
                break;
            };
            self.members.push((best.who, now));
        }
        // A clearly louder outsider replaces the quietest member that has held long enough.
        while let Some(challenger) = loudest_outside(candidates, &self.members, exclude) {
            if challenger.db <= SILENT_DB {
                break;
            }
            let weakest = self
                .members
                .iter()
                .enumerate()
                .filter(|(_, (_, since))| now.saturating_duration_since(*since) >= MIN_HOLD)
                .min_by(|a, b| db_of(a.1.0).total_cmp(&db_of(b.1.0)));
            let Some((i, &(member, _))) = weakest else {
                break;
            };
            if challenger.db <= db_of(member) + HYSTERESIS_DB {
                break;
            }
            self.members[i] = (challenger.who, now);
        }
        let after: Vec<ParticipantId> = self.members.iter().map(|(m, _)| *m).collect();
        before != after
    }
}

/// The loudest candidate not in `members` nor `exclude` (the earliest of equals).
fn loudest_outside<'a>(
    candidates: &'a [Candidate],
    members: &[(ParticipantId, Instant)],
    exclude: &[ParticipantId],
) -> Option<&'a Candidate> {
    candidates
        .iter()
        .filter(|c| !exclude.contains(&c.who) && !members.iter().any(|(m, _)| *m == c.who))
        // `max_by` keeps the last of equals; reversing keeps the first in speaking order.
        .rev()
        .max_by(|a, b| a.db.total_cmp(&b.db))
}

/// The two tiers of a room's selection.
#[derive(Debug)]
pub(crate) struct Selection {
    forwarded: Tier,
    reserve: Tier,
}

impl Selection {
    /// A selection forwarding at most `n` speakers to each listener.
    pub(crate) fn new(n: usize) -> Self {
        Selection {
            forwarded: Tier {
                capacity: n,
                members: Vec::new(),
            },
            reserve: Tier {
                capacity: 1,
                members: Vec::new(),
            },
        }
    }

    /// Re-evaluates against the speakers' loudness now. Returns whether anything changed.
    pub(crate) fn update(&mut self, candidates: &[Candidate], now: Instant) -> bool {
        let forwarded = self.forwarded.update(candidates, &[], now);
        let inside: Vec<ParticipantId> = self.forwarded.members.iter().map(|(m, _)| *m).collect();
        // A reserve promoted to the forwarded tier leaves the reserve.
        self.reserve.members.retain(|(m, _)| !inside.contains(m));
        let reserve = self.reserve.update(candidates, &inside, now);
        forwarded || reserve
    }

    /// Whether `who` is among the forwarded speakers (and so hears the reserve instead of
    /// themself).
    pub(crate) fn is_forwarded(&self, who: ParticipantId) -> bool {
        self.forwarded.contains(who)
    }

    /// What everyone who is not a forwarded speaker receives: the forwarded tier.
    pub(crate) fn wanted_by_listeners(&self) -> Vec<ParticipantId> {
        let mut wanted: Vec<ParticipantId> =
            self.forwarded.members.iter().map(|(m, _)| *m).collect();
        wanted.truncate(self.forwarded.capacity);
        wanted
    }

    /// The speakers `listener` should receive (at most `n`), forwarded tier first.
    pub(crate) fn wanted_by(&self, listener: ParticipantId) -> Vec<ParticipantId> {
        let mut wanted: Vec<ParticipantId> = self
            .forwarded
            .members
            .iter()
            .map(|(m, _)| *m)
            .filter(|m| *m != listener)
            .collect();
        if self.forwarded.contains(listener) {
            wanted.extend(self.reserve.members.iter().map(|(m, _)| *m));
        }
        wanted.truncate(self.forwarded.capacity);
        wanted
    }
}

/// Puts `wanted` into `slots` with as few moves as possible: a speaker already in a slot keeps
/// it, a newcomer takes a slot that is free or holds someone no longer wanted, and slots of
/// nobody wanted are cleared. Slots from `usable` on are never used.
pub(crate) fn assign<const S: usize>(
    slots: &[Option<ParticipantId>; S],
    wanted: &[ParticipantId],
    usable: usize,
) -> [Option<ParticipantId>; S] {
    let mut out = [None; S];
    for (i, s) in slots.iter().enumerate().take(usable) {
        if let Some(p) = s
            && wanted.contains(p)
        {
            out[i] = Some(*p);
        }
    }
    for p in wanted {
        if out.contains(&Some(*p)) {
            continue;
        }
        if let Some(free) = out.iter().take(usable).position(Option::is_none) {
            out[free] = Some(*p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u64) -> ParticipantId {
        ParticipantId(n)
    }

    fn c(n: u64, db: f32) -> Candidate {
        Candidate { who: p(n), db }
    }

    fn sorted(mut v: Vec<ParticipantId>) -> Vec<ParticipantId> {
        v.sort_by_key(|p| p.0);
        v
    }

    #[test]
    fn the_loudest_three_of_five_are_forwarded_and_speakers_hear_the_reserve() {
        let t0 = Instant::now();
        let mut s = Selection::new(3);
        let cands = [
            c(1, -40.0),
            c(2, -20.0),
            c(3, -30.0),
            c(4, -50.0),
            c(5, -25.0),
        ];
        assert!(s.update(&cands, t0));
        assert_eq!(sorted(s.wanted_by(p(99))), vec![p(2), p(3), p(5)]);
        // A forwarded speaker hears the other two and the reserve (the fourth loudest).
        assert_eq!(sorted(s.wanted_by(p(2))), vec![p(1), p(3), p(5)]);
        // A speaker outside hears the three.
        assert_eq!(sorted(s.wanted_by(p(4))), vec![p(2), p(3), p(5)]);
        assert!(!s.update(&cands, t0 + Duration::from_millis(100)));
    }

    #[test]
    fn a_switch_needs_a_clear_margin_and_a_held_place() {
        let t0 = Instant::now();
        let mut s = Selection::new(2);
        assert!(s.update(&[c(1, -20.0), c(2, -30.0), c(3, -40.0)], t0));
        // Louder than the quietest, but by less than the margin: no change.
        let t1 = t0 + Duration::from_secs(1);
        assert!(!s.update(&[c(1, -20.0), c(2, -30.0), c(3, -26.0)], t1));
        // By more than the margin: speaker 3 replaces 2.
        assert!(s.update(&[c(1, -20.0), c(2, -30.0), c(3, -22.0)], t1));
        assert_eq!(sorted(s.wanted_by(p(9))), vec![p(1), p(3)]);
        // Speaker 2 comes right back loud. Speaker 3 has not held its place for MIN_HOLD, so
        // the one to go is 1, though 3 is a little quieter.
        let t2 = t1 + Duration::from_millis(100);
        assert!(s.update(&[c(1, -20.0), c(2, -5.0), c(3, -22.0)], t2));
        assert_eq!(sorted(s.wanted_by(p(9))), vec![p(2), p(3)]);
        // Speaker 1 is not louder than 3 by the margin: it stays out even once 3 has held.
        let t3 = t1 + MIN_HOLD;
        assert!(!s.update(&[c(1, -20.0), c(2, -5.0), c(3, -22.0)], t3));
        // Speaker 3 falls silent: 1 takes its place.
        assert!(s.update(&[c(1, -20.0), c(2, -5.0), c(3, SILENT_DB)], t3));
        assert_eq!(sorted(s.wanted_by(p(9))), vec![p(1), p(2)]);
    }

    #[test]
    fn silence_never_displaces_and_free_places_fill_at_once() {
        let t0 = Instant::now();
        let mut s = Selection::new(2);
        s.update(&[c(1, SILENT_DB), c(2, SILENT_DB), c(3, SILENT_DB)], t0);
        // Everyone silent: the first two in speaking order hold the places.
        assert_eq!(s.wanted_by(p(9)), vec![p(1), p(2)]);
        // Speaker 1 leaves the stage: its place goes to 3 at once.
        assert!(s.update(&[c(2, SILENT_DB), c(3, SILENT_DB)], t0));
        assert_eq!(sorted(s.wanted_by(p(9))), vec![p(2), p(3)]);
    }

    #[test]
    fn slots_stay_put_for_whoever_remains() {
        let slots = [Some(p(1)), Some(p(2)), Some(p(3))];
        assert_eq!(
            assign(&slots, &[p(3), p(4), p(1)], 3),
            [Some(p(1)), Some(p(4)), Some(p(3))]
        );
        assert_eq!(assign(&slots, &[p(2)], 3), [None, Some(p(2)), None]);
        assert_eq!(
            assign(&[None; 3], &[p(5), p(6)], 3),
            [Some(p(5)), Some(p(6)), None]
        );
        // Only the usable slots are used.
        assert_eq!(
            assign(&slots, &[p(3), p(4)], 2),
            [Some(p(3)), Some(p(4)), None]
        );
    }
}
