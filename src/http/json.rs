//! The proto3 JSON mapping for Connect's JSON codec, by prost-reflect from the descriptors
//! build.rs embeds for reflection: one mapping for every message, kept in step with the
//! proto by construction (no second code generator, no hand-written JSON).

use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, MethodDescriptor,
    SerializeOptions,
};

use crate::api::pb;

/// The API's descriptors, health's and the error details'.
pub struct Registry {
    pool: DescriptorPool,
}

impl Registry {
    pub fn new() -> Result<Registry, String> {
        let mut pool = DescriptorPool::new();
        for set in [
            pb::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_types::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            add(&mut pool, set)?;
        }
        Ok(Registry { pool })
    }

    /// A registry that knows no method: what the server runs with, Connect refused, if
    /// the embedded descriptors ever failed to load (a unit test loads them).
    pub fn empty() -> Registry {
        Registry {
            pool: DescriptorPool::new(),
        }
    }

    /// A message type by its full name.
    pub fn message(&self, name: &str) -> Option<MessageDescriptor> {
        self.pool.get_message_by_name(name)
    }

    /// The method a request path (`/servicelevel.v1.TicketService/GetTicket`) names.
    pub fn method(&self, path: &str) -> Option<MethodDescriptor> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        self.pool
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
    }

    /// A JSON message (`{}` when empty) as the protobuf binary of `desc`. Unknown fields
    /// are ignored, as Connect's own implementations do, so that a client built against a
    /// newer proto can talk to an older server.
    pub fn from_json(desc: &MessageDescriptor, json: &[u8]) -> Result<Vec<u8>, String> {
        let json: &[u8] = if json.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            json
        };
        let mut de = serde_json::Deserializer::from_slice(json);
        let options = DeserializeOptions::new().deny_unknown_fields(false);
        let message = DynamicMessage::deserialize_with_options(desc.clone(), &mut de, &options)
            .map_err(|e| format!("the body is not a valid JSON {}: {e}", desc.full_name()))?;
        de.end()
            .map_err(|e| format!("trailing data after the JSON message: {e}"))?;
        Ok(message.encode_to_vec())
    }

    /// A protobuf binary of `desc` as JSON (lowerCamelCase names, defaults omitted, 64-bit
    /// integers as strings, enums by name: the canonical mapping).
    pub fn to_json(desc: &MessageDescriptor, proto: &[u8]) -> Result<Vec<u8>, String> {
        let message = DynamicMessage::decode(desc.clone(), proto)
            .map_err(|e| format!("undecodable {}: {e}", desc.full_name()))?;
        let mut out = Vec::with_capacity(proto.len() * 2);
        let mut ser = serde_json::Serializer::new(&mut out);
        message
            .serialize_with_options(&mut ser, &SerializeOptions::new())
            .map_err(|e| format!("{} as JSON: {e}", desc.full_name()))?;
        Ok(out)
    }

    /// An error detail decoded for Connect's `debug` field, when its type is known.
    pub fn debug(&self, any: &prost_types::Any) -> Option<serde_json::Value> {
        let name = any.type_url.rsplit('/').next()?;
        let desc = self.pool.get_message_by_name(name)?;
        let message = DynamicMessage::decode(desc, any.value.as_slice()).ok()?;
        serde_json::to_value(&message).ok()
    }
}

/// Adds a set's files, leaving out those the pool already has: the same name, or the
/// same messages under another name (tonic-types calls google/rpc/status.proto
/// `status.proto`; the two reflection sets may share a file name).
fn add(pool: &mut DescriptorPool, set: &[u8]) -> Result<(), String> {
    let set = prost_types::FileDescriptorSet::decode(set).map_err(|e| e.to_string())?;
    for file in set.file {
        let package = file.package().to_string();
        let known = pool.get_file_by_name(file.name()).is_some()
            || file.message_type.iter().any(|m| {
                pool.get_message_by_name(&format!("{package}.{}", m.name()))
                    .is_some()
            });
        if !known {
            pool.add_file_descriptor_proto(file)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::new().expect("the embedded descriptors load")
    }

    #[test]
    fn methods_are_found_by_path() {
        let r = registry();
        let m = r
            .method("/servicelevel.v1.TicketService/GetTicket")
            .expect("GetTicket");
        assert_eq!(m.input().full_name(), "servicelevel.v1.GetTicketRequest");
        assert!(r.method("/servicelevel.v1.TicketService/Nope").is_none());
        assert!(r.method("/grpc.health.v1.Health/Check").is_some());
        assert!(
            r.method("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
                .is_some_and(|m| m.is_client_streaming())
        );
        assert!(r.method("no-slash").is_none());
    }

    #[test]
    fn json_round_trips_through_the_binary_form() {
        let r = registry();
        let m = r
            .method("/servicelevel.v1.TicketService/GetTicket")
            .expect("GetTicket");
        let proto = Registry::from_json(&m.input(), br#"{"name":"tickets/t-1","unknown":1}"#)
            .expect("parses, unknown field ignored");
        let typed = pb::GetTicketRequest::decode(proto.as_slice()).expect("decodes");
        assert_eq!(typed.name, "tickets/t-1");
        let json = Registry::to_json(&m.input(), &proto).expect("serialises");
        assert_eq!(json, br#"{"name":"tickets/t-1"}"#);
        assert!(Registry::from_json(&m.input(), b"").is_ok());
        assert!(Registry::from_json(&m.input(), br#"{"name":3}"#).is_err());
        assert!(Registry::from_json(&m.input(), br#"{} x"#).is_err());
    }

    #[test]
    fn timestamps_and_64_bit_integers_follow_the_mapping() {
        let p = pb::LedgerEntry {
            minutes: 90,
            record_time: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        let r = registry();
        let desc = r
            .pool
            .get_message_by_name("servicelevel.v1.LedgerEntry")
            .expect("LedgerEntry");
        let json = Registry::to_json(&desc, &p.encode_to_vec()).expect("serialises");
        let v: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
        assert_eq!(v["minutes"], "90");
        assert_eq!(v["recordTime"], "2027-01-15T08:00:00Z");
    }

    #[test]
    fn error_details_decode_for_debugging() {
        let r = registry();
        let detail = tonic_types::pb::ErrorInfo {
            reason: "INVALID_REQUEST".into(),
            domain: "servicelevel.dev".into(),
            metadata: Default::default(),
        };
        let any = prost_types::Any {
            type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
            value: detail.encode_to_vec(),
        };
        let v = r.debug(&any).expect("known type");
        assert_eq!(v["reason"], "INVALID_REQUEST");
    }
}
