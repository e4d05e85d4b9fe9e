import ErdtreeRPC
import NIOCore

/// Runs a unary handler's body and answers the call with the message it returns, or ends it with
/// the status it throws. Any thread: the call takes the answer to its own event loop.
func answer(_ call: ServerCall, _ body: () throws(RPCStatus) -> ByteBuffer) {
    do {
        call.respond(try body())
    } catch {
        call.finish(error)
    }
}
