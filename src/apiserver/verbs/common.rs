//! What every verb shares: the target's store key, its 404, validation as
//! a 422, and a reply as an object or a one-row Table.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::apiserver::context::{Body, Ctx, Target, json as json_resp};
use crate::apiserver::error::{ApiError, Cause};
use crate::apiserver::kinds;
use crate::apiserver::meta::meta_str;
use crate::apiserver::resources::Kind;
use crate::apiserver::store::object_key;
use crate::apiserver::table;

pub fn key_of(t: &Target) -> String {
    object_key(t.kind.group, t.kind.resource, &t.namespace, &t.name)
}

pub fn not_found(t: &Target) -> ApiError {
    ApiError::not_found(t.kind.group, t.kind.resource, &t.name)
}

pub fn respond(ctx: &Ctx, kind: &Kind, status: StatusCode, object: &Value) -> Response<Body> {
    if ctx.table {
        let t = table::table(
            kind,
            std::slice::from_ref(object),
            json!({"resourceVersion": meta_str(object, "resourceVersion")}),
            true,
        );
        json_resp(status, &t)
    } else {
        ctx.reply(status, object)
    }
}

pub fn invalid(kind: &Kind, object: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(kind.kind, kind.group, meta_str(object, "name"), causes)
}

pub fn check_valid(kind: &Kind, object: &Value) -> Result<(), ApiError> {
    let causes = kinds::validate(kind, object);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(kind, object, causes))
    }
}
