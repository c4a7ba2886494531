//! The one error of the CRI boundary: a gRPC code and a message, as a CRI
//! client sees it whichever implementation answered.

/// An error from a CRI call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct CriError {
    pub code: tonic::Code,
    pub message: String,
}

impl CriError {
    pub fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(tonic::Code::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(tonic::Code::NotFound, message)
    }

    pub fn deadline_exceeded(message: impl Into<String>) -> Self {
        Self::new(tonic::Code::DeadlineExceeded, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(tonic::Code::Internal, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(tonic::Code::Unavailable, message)
    }

    /// A call this implementation does not serve (yet).
    pub fn unimplemented(call: &str) -> Self {
        Self::new(
            tonic::Code::Unimplemented,
            format!("{call} is not implemented by deckhand yet"),
        )
    }

    pub fn is_not_found(&self) -> bool {
        self.code == tonic::Code::NotFound
    }
}

impl From<tonic::Status> for CriError {
    fn from(status: tonic::Status) -> Self {
        Self::new(status.code(), status.message())
    }
}

impl From<CriError> for tonic::Status {
    fn from(error: CriError) -> Self {
        tonic::Status::new(error.code, error.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_grpc_status() {
        let e = CriError::not_found("container abc not found");
        let status: tonic::Status = e.clone().into();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(CriError::from(status), e);
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "NotFound: container abc not found");
    }
}
