using System.Diagnostics;

namespace Paging.Testing.Servers;

/// <summary>
/// A real nginx serving a folder on a loopback port, with a generated configuration (one process, no daemon, logs and
/// temp files in its own folder, sendfile on, ETags on — Debian's defaults for static files), on plain HTTP and on
/// HTTPS with HTTP/2 (a self-signed certificate for 127.0.0.1 made with openssl, <see cref="CertificatePath"/>).
/// Stopped and its folder deleted on dispose.
/// </summary>
public sealed class NginxServer : IDisposable
{
    private readonly Process _process;
    private readonly string _prefix;

    private NginxServer(Process process, string prefix, string root, int port, int tlsPort, string? certificate)
    {
        _process = process;
        _prefix = prefix;
        Root = root;
        Port = port;
        TlsPort = tlsPort;
        CertificatePath = certificate;
    }

    /// <summary>The Authorization header files under /private/ need (401 without it); /forbidden.bin is always 403.</summary>
    public const string PrivateAuthorization = "Bearer paging-test-token";

    /// <summary>The folder served at /.</summary>
    public string Root { get; }

    /// <summary>The loopback port.</summary>
    public int Port { get; }

    /// <summary>The URL of a file in <see cref="Root"/>.</summary>
    public Uri UrlOf(string name) => new($"http://127.0.0.1:{Port}/{name}");

    /// <summary>The HTTPS (HTTP/2) port, 0 when openssl was not found.</summary>
    public int TlsPort { get; }

    /// <summary>The server's self-signed certificate (PEM), null when openssl was not found.</summary>
    public string? CertificatePath { get; }

    /// <summary>The https:// URL of a file in <see cref="Root"/> (HTTP/2 over TLS).</summary>
    public Uri HttpsUrlOf(string name) => TlsPort == 0
        ? throw new LocalServerException("no HTTPS listener: openssl was not found to make its certificate")
        : new($"https://127.0.0.1:{TlsPort}/{name}");

    private static readonly string[] OpensslPaths = ["/usr/bin/openssl", "/bin/openssl", "/usr/local/bin/openssl"];

    /// <summary>A self-signed certificate for 127.0.0.1 (the subject alternative name TLS clients check), valid 7 days.</summary>
    private static string? MakeCertificate(string prefix)
    {
        string? openssl = Array.Find(OpensslPaths, File.Exists);
        if (openssl is null)
        {
            return null;
        }
        string cert = Path.Combine(prefix, "cert.pem"), key = Path.Combine(prefix, "key.pem");
        var psi = new ProcessStartInfo(openssl) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
            "-days", "7", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1" })
        {
            psi.ArgumentList.Add(a);
        }
        using var process = Process.Start(psi)!;
        string errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return process.ExitCode == 0 ? cert : throw new LocalServerException($"openssl could not make a certificate: {errors}");
    }

    /// <summary>Starts nginx over a new empty folder (or <paramref name="root"/>).</summary>
    public static NginxServer Start(string? root = null)
    {
        string nginx = LocalServers.Nginx;
        var prefix = Directory.CreateTempSubdirectory("paging-nginx-").FullName;
        root ??= Directory.CreateDirectory(Path.Combine(prefix, "www")).FullName;
        string? certificate = MakeCertificate(prefix);
        for (int attempt = 1; ; attempt++)
        {
            int port = LocalServers.FreePort();
            int tlsPort = certificate is null ? 0 : LocalServers.FreePort();
            string tls = certificate is null ? "" : $$"""
                    server {
                        listen 127.0.0.1:{{tlsPort}} ssl http2;
                        ssl_certificate {{certificate}};
                        ssl_certificate_key {{prefix}}/key.pem;
                        root {{root}};
                    }
                """;
            var conf = Path.Combine(prefix, "nginx.conf");
            File.WriteAllText(conf, $$"""
                user root;
                worker_processes 1;
                daemon off;
                master_process off;
                pid {{prefix}}/nginx.pid;
                error_log {{prefix}}/error.log warn;
                events { worker_connections 1024; }
                http {
                    access_log off;
                    sendfile on;
                    tcp_nopush on;
                    keepalive_requests 100000;
                    keepalive_timeout 120s;
                    default_type application/octet-stream;
                    client_body_temp_path {{prefix}}/body;
                    proxy_temp_path {{prefix}}/proxy;
                    fastcgi_temp_path {{prefix}}/fastcgi;
                    uwsgi_temp_path {{prefix}}/uwsgi;
                    scgi_temp_path {{prefix}}/scgi;
                    server {
                        listen 127.0.0.1:{{port}};
                        root {{root}};
                        location = /forbidden.bin { return 403; }
                        location /private/ {
                            if ($http_authorization != "{{PrivateAuthorization}}") { return 401; }
                        }
                    }
                {{tls}}
                }
                """);
            var process = LocalServers.StartTied(nginx, ["-p", prefix, "-c", conf, "-e", $"{prefix}/error.log"], prefix);
            if (LocalServers.WaitForPort(port, TimeSpan.FromSeconds(10), () => !process.HasExited)
                && (tlsPort == 0 || LocalServers.WaitForPort(tlsPort, TimeSpan.FromSeconds(10), () => !process.HasExited)))
            {
                return new NginxServer(process, prefix, root, port, tlsPort, certificate);
            }
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
            process.WaitForExit();
            string log = File.Exists(Path.Combine(prefix, "error.log")) ? File.ReadAllText(Path.Combine(prefix, "error.log")) : "";
            process.Dispose();
            if (attempt == 3)
            {
                throw new LocalServerException($"nginx did not start on 127.0.0.1:{port}: {log}");
            }
        }
    }

    /// <inheritdoc />
    public void Dispose() => LocalServers.Stop(_process, _prefix);
}
