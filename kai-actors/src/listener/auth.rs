//! Text-protocol authentication of a connection (memcached's `-Y` auth file): until the client
//! sends valid credentials, nothing else runs. The decoder (`kai_proto::auth::text`) gives
//! memcached's answers; this loop checks credentials and does the I/O. Credentials never
//! appear in logs.

use super::wire::{ClientStream, Wire};
use super::SessionContext;
use kai_proto::auth::text::{TextAuth, TextAuthDecoder, AUTHENTICATED, FAILED};
use kai_proto::auth::AuthFile;
use tokio_util::codec::Decoder;

/// Serves `wire` until the client authenticates against `users` (true) or the connection ends
/// (false). Input after the successful `set` stays in `wire.input` for the text session.
pub(super) async fn authenticate_text<S: ClientStream>(
    wire: &mut Wire<S>,
    ctx: &SessionContext,
    users: &AuthFile,
) -> bool {
    let mut decoder = TextAuthDecoder::default();
    loop {
        match decoder.decode(&mut wire.input) {
            Ok(Some(TextAuth::Attempt { user, password })) => {
                ctx.connection.touch();
                if users.check(&user, &password) {
                    wire.output.extend_from_slice(AUTHENTICATED);
                    return wire.flush(ctx).await;
                }
                log::debug!("client {}: text authentication failed", ctx.connection.peer);
                wire.output.extend_from_slice(FAILED);
            }
            Ok(Some(TextAuth::Refused(reply))) => wire.output.extend_from_slice(reply),
            Ok(Some(TextAuth::Close)) => {
                wire.flush(ctx).await;
                return false;
            }
            Ok(None) => {
                if !wire.flush(ctx).await || !wire.read(ctx).await {
                    return false;
                }
            }
            Err(e) => {
                log::debug!("client connection failed: {e}");
                return false;
            }
        }
    }
}
