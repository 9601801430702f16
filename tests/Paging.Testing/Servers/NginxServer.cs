using System.Diagnostics;

namespace Paging.Testing.Servers;

/// <summary>
/// A real nginx serving a folder on a loopback port, with a generated configuration (one process, no daemon, logs and
/// temp files in its own folder, sendfile on, ETags on — Debian's defaults for static files). Stopped and its folder
/// deleted on dispose.
/// </summary>
public sealed class NginxServer : IDisposable
{
    private readonly Process _process;
    private readonly string _prefix;

    private NginxServer(Process process, string prefix, string root, int port)
    {
        _process = process;
        _prefix = prefix;
        Root = root;
        Port = port;
    }

    /// <summary>The Authorization header files under /private/ need (401 without it); /forbidden.bin is always 403.</summary>
    public const string PrivateAuthorization = "Bearer paging-test-token";

    /// <summary>The folder served at /.</summary>
    public string Root { get; }

    /// <summary>The loopback port.</summary>
    public int Port { get; }

    /// <summary>The URL of a file in <see cref="Root"/>.</summary>
    public Uri UrlOf(string name) => new($"http://127.0.0.1:{Port}/{name}");

    /// <summary>Starts nginx over a new empty folder (or <paramref name="root"/>).</summary>
    public static NginxServer Start(string? root = null)
    {
        string nginx = LocalServers.Nginx;
        var prefix = Directory.CreateTempSubdirectory("paging-nginx-").FullName;
        root ??= Directory.CreateDirectory(Path.Combine(prefix, "www")).FullName;
        for (int attempt = 1; ; attempt++)
        {
            int port = LocalServers.FreePort();
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
                }
                """);
            var process = LocalServers.StartTied(nginx, ["-p", prefix, "-c", conf, "-e", $"{prefix}/error.log"]);
            if (LocalServers.WaitForPort(port, TimeSpan.FromSeconds(10), () => !process.HasExited))
            {
                return new NginxServer(process, prefix, root, port);
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
                throw new InvalidOperationException($"nginx did not start on 127.0.0.1:{port}: {log}");
            }
        }
    }

    /// <inheritdoc />
    public void Dispose() => LocalServers.Stop(_process, _prefix);
}
