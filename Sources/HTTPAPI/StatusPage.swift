import Foundation
import Hummingbird
import Platform

/// The small HTML page at `/`: what this server is, its version and what it holds.
/// Chinese first, English beside it, as the platform's users read both.
enum StatusPage {
    /// Public: it says what the server is and where to go, and nothing about the data it holds.
    static func render(development: Bool) -> Response {
        let banner = development
            ? "<p style=\"background:#fde;padding:.5em\"><b>开发模式 Development mode</b>：无令牌的请求以开发管理员身份执行，仅限本机访问。"
              + " Requests without a token act as a development administrator; loopback only.</p>"
            : ""
        let html = """
        <!DOCTYPE html>
        <html lang="zh-CN">
        <head><meta charset="utf-8"><title>汇通 Huitong</title>
        <style>body{font-family:sans-serif;max-width:50em;margin:2em auto;padding:0 1em}table{border-collapse:collapse}td{border-bottom:1px solid #ddd;padding:.2em 1em}</style>
        </head>
        <body>
        <h1>汇通 Huitong</h1>
        \(banner)
        <p>区域全民健康信息平台 · Regional population health information platform</p>
        <p>版本 Version \(CapabilityStatementBuilder.softwareVersion) · FHIR R4 (4.0.1)</p>
        <ul>
        <li><a href="/fhir/metadata">能力声明 CapabilityStatement (/fhir/metadata)</a></li>
        <li><a href="/health">健康检查 Health</a> · <a href="/ready">就绪 Ready</a></li>
        </ul>
        </body>
        </html>
        """
        return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
