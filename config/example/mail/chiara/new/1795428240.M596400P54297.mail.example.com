From: Pipeline Digest <digest@pipelinedigest.example>
To: Chiara Conti <chiara@example.com>
Subject: Pipeline Digest: New thread: attribution models
Date: Mon, 23 Nov 2026 10:04:00 +0000
Message-ID: <4373bf9fcb48f2e7.488be@pipelinedigest.example>
List-Id: Pipeline Digest <pipelinedigest.pipelinedigest.example>
List-Unsubscribe: <https://pipelinedigest.example/u/8f320693>, <mailto:leave@pipelinedigest.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 7bit

Pipeline Digest: New thread: attribution models

Read online: https://pipelinedigest.example/issues/latest
Unsubscribe: https://pipelinedigest.example/u
