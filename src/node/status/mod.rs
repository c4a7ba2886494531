//! CRI state -> API pod status, back-off and events.
