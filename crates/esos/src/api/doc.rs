//! The OpenAPI document, generated from the handlers' annotations.
//!
//! The manager's answer types are described by the mirror types in [`super::schema`], so the
//! document cannot drift from the answers.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::handlers;
use super::schema::{
    ApplyReportDoc, DeviceInfoDoc, GroupInfoDoc, LunInfoDoc, SessionInfoDoc, TargetInfoDoc,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "esos management API",
        description = "Devices, targets, initiator groups, LUN maps, CHAP, portals, sessions, \
            the daemon's own information and recent log, and the whole config of a running \
            esos daemon. Every change is validated as a complete config, applied live and persisted; errors are `{\"error\": msg}` with \
            400 (bad input, names the field), 404 (no such object), 409 (conflict or in \
            use) or 500 (internal). On the unix socket no token is needed; on TCP (TLS) \
            every request but `GET /api/v1/openapi.json` carries `Authorization: Bearer \
            <token>`: 401 without a known token, 403 for a read-only token on anything \
            but GET and HEAD."
    ),
    modifiers(&BearerSecurity),
    paths(
        handlers::list_devices,
        handlers::get_device,
        handlers::add_device,
        handlers::remove_device,
        handlers::resize_device,
        handlers::list_targets,
        handlers::get_target,
        handlers::add_target,
        handlers::remove_target,
        handlers::enable_target,
        handlers::disable_target,
        handlers::set_chap,
        handlers::clear_chap,
        handlers::add_group,
        handlers::remove_group,
        handlers::add_initiators,
        handlers::remove_initiators,
        handlers::map_default_lun,
        handlers::unmap_default_lun,
        handlers::map_group_lun,
        handlers::unmap_group_lun,
        handlers::add_portal,
        handlers::remove_portal,
        handlers::list_sessions,
        handlers::close_session,
        handlers::get_stats,
        handlers::list_port_groups,
        handlers::set_port_group_state,
        handlers::get_metrics,
        handlers::get_system,
        handlers::get_log,
        handlers::get_config,
        handlers::put_config,
        super::replicas::list_replicas,
        super::replicas::get_replica,
        super::replicas::replica_action,
        openapi,
    ),
    components(schemas(
        DeviceInfoDoc,
        TargetInfoDoc,
        GroupInfoDoc,
        LunInfoDoc,
        SessionInfoDoc,
        ApplyReportDoc,
        crate::manager::DeviceStats,
        handlers::SizeBody,
        handlers::StateBody,
        crate::manager::PortGroupInfo,
        crate::cluster::ReplicaList,
        crate::cluster::ReplicaInfo,
        crate::cluster::PeerInfo,
        crate::cluster::GroupState,
        super::replicas::PromoteBody,
        super::replicas::ResolveBody,
        crate::system::SystemInfo,
        crate::system::LogEvent,
        super::error::ErrorBody,
    ))
)]
struct ApiDoc;

/// Declares the bearer scheme, makes it the (optional: the unix socket needs none)
/// requirement of every operation, and adds the 401 and 403 answers the token layer gives.
struct BearerSecurity;

impl Modify for BearerSecurity {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "TCP listeners only: a token whose SHA-256 is configured in \
                             [[api.token]], role admin or read-only",
                        ))
                        .build(),
                ),
            );
        doc.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::default(),
        ]);
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for item in doc.paths.paths.values_mut() {
            let ops = [
                (&mut item.get, false),
                (&mut item.head, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.delete, true),
                (&mut item.patch, true),
            ];
            for (op, mutates) in ops {
                let Some(op) = op else { continue };
                if op
                    .security
                    .as_ref()
                    .is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default()))
                {
                    continue; // public
                }
                let r = &mut op.responses.responses;
                r.entry("401".into())
                    .or_insert_with(|| error("TCP: no token, or a token nobody configured"));
                if mutates {
                    r.entry("403".into())
                        .or_insert_with(|| error("TCP: a read-only token"));
                }
            }
        }
    }
}

/// The document as JSON, built once.
pub fn openapi_json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"openapi: {e}\"}}"))
    })
    .clone()
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "this document")))]
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

/// Property names of the mirror schema `name` in the generated document.
#[cfg(test)]
pub fn schema_fields(name: &str) -> Vec<String> {
    let doc: serde_json::Value =
        serde_json::from_str(&openapi_json()).expect("the document is JSON");
    let mut v: Vec<String> = doc["components"]["schemas"][name]["properties"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    v.sort();
    v
}
