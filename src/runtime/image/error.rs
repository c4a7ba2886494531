//! One error type for image operations, shaped by the gRPC code a CRI client
//! should see. Cloneable, because one pull's result is shared by every caller
//! that asked for the same image at the same time.

use crate::runtime::registry::RegistryError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
    DeadlineExceeded,
    Internal,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ImageError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ImageError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Prefixes the message with what we were doing, keeping the kind.
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        Self {
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
    }

    /// A containerd call failed: its status code mostly carries over.
    pub fn containerd(what: impl std::fmt::Display, status: tonic::Status) -> Self {
        let kind = match status.code() {
            tonic::Code::NotFound => ErrorKind::NotFound,
            tonic::Code::Unavailable => ErrorKind::Unavailable,
            tonic::Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            _ => ErrorKind::Internal,
        };
        Self::new(kind, format!("{what}: containerd: {}", status.message()))
    }

    /// The gRPC code a CRI client gets for this error.
    pub fn code(&self) -> tonic::Code {
        match self.kind {
            ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            ErrorKind::Internal => tonic::Code::Internal,
        }
    }
}

impl From<RegistryError> for ImageError {
    fn from(e: RegistryError) -> Self {
        let kind = match &e {
            RegistryError::NotFound { .. } => ErrorKind::NotFound,
            RegistryError::Unauthorized { .. } => ErrorKind::Unauthenticated,
            RegistryError::Unreachable { .. } | RegistryError::Stalled { .. } => {
                ErrorKind::Unavailable
            }
            RegistryError::Protocol { .. } => ErrorKind::Unavailable,
        };
        ImageError::new(kind, e.to_string())
    }
}
