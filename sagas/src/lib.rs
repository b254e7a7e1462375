//! Sagas (process managers, DESIGN §7): ProposalAccepted → contract, paid milestones → completion. Comes with the sagas issue.
