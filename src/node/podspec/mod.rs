//! Pod -> CRI translation: sandbox and container configs from a Pod.
