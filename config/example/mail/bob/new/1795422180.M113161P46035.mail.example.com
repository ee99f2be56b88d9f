From: RevOps Forum <forum@revops-forum.example>
To: Bob Brown <bob@example.com>
Subject: RevOps Forum: 12 tools for sales ops
Date: Mon, 23 Nov 2026 08:23:00 +0000
Message-ID: <a28327fd9eea0d0f.30b24@revops-forum.example>
List-Id: RevOps Forum <revopsforum.revops-forum.example>
List-Unsubscribe: <https://revops-forum.example/u/51cd9c44>, <mailto:leave@revops-forum.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 7bit

RevOps Forum: 12 tools for sales ops

Read online: https://revops-forum.example/issues/latest
Unsubscribe: https://revops-forum.example/u
