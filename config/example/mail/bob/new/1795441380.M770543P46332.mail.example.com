From: Mail Delivery System <MAILER-DAEMON@mta7.us-relay.example>
To: Bob Brown <bob@example.com>
Subject: Undelivered Mail Returned to Sender
Date: Mon, 23 Nov 2026 13:43:00 +0000
Message-ID: <9d53d5576d10da74.a2745@mta7.us-relay.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="D5E9848F7D.bounce"

--D5E9848F7D.bounce
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mta7.us-relay.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<lauren.brooks@cascade-medical.example>: host mx.cascade-medical.example said: 550 5.1.1 User unknown

--D5E9848F7D.bounce
Content-Type: message/delivery-status

Reporting-MTA: dns; mta7.us-relay.example
Arrival-Date: Mon, 23 Nov 2026 13:41:00 +0000

Final-Recipient: rfc822; lauren.brooks@cascade-medical.example
Original-Recipient: rfc822;lauren.brooks@cascade-medical.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.cascade-medical.example
Diagnostic-Code: smtp; 550 5.1.1 <lauren.brooks@cascade-medical.example>: Recipient address rejected: User unknown

--D5E9848F7D.bounce
Content-Type: text/rfc822-headers

From: Bob Brown <bob@example.com>
To: Lauren Brooks <lauren.brooks@cascade-medical.example>
Subject: Cascade Medical follow-up
Date: Mon, 23 Nov 2026 08:41:00 -0500
Message-ID: <a6b97657fcbc8341.40bb7@mail.example.com>

--D5E9848F7D.bounce--
